"""gradviz: watch gradients flow through deep networks, live."""

__version__ = "0.1.0"

from .core.runfile import RunFileError, open_run  # noqa: E402


def watch(*args, **kwargs):
    """Record a user's own training loop; see `gradviz.core.watch.watch`."""
    from .core.watch import watch as _watch

    return _watch(*args, **kwargs)


__all__ = ["RunFileError", "__version__", "open_run", "watch"]
