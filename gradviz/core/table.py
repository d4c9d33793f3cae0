"""The layer table stored in a recording's metadata (`meta["layer_table"]`), JSON-friendly.

Computed where the model lives (the training thread or process), so the GUI never needs the model.
"""

from __future__ import annotations

# what a "-" output shape means, under the CLI's and the GUI's tables
SKIPPED_NOTE = "- : not in the forward pass now (a switch is off, or the layer is unused); counted with its parameters, 0 FLOPs"


def summary_rows(model, input_shape, device="cpu") -> list[list]:
    """Rows [name, type, output shape, params, flops, tied] of `summarize`, as plain lists and ints
    (`tied`: of `params`, those an earlier row owns too; files written before it have five)."""
    from .summary import summarize

    return [[r.name, r.type, list(r.output_shape), int(r.params), int(r.flops), int(r.tied)] for r in summarize(model, input_shape, device=device)]


def store_layer_table(recording, runs, fresh: bool = False) -> None:
    """Put the layer table of `runs` (built `TrainingRun`s) in the recording's metadata, beside the
    tables of its other runs (none when `fresh`), so whoever opens the file never has to build the
    models again."""
    table = {} if fresh else dict(recording.meta.get("layer_table") or {})
    for run in runs:
        table[run.name] = summary_rows(run.model, tuple(run.data.input_shape), device=run.device)  # a GPU run's dummy batch on the GPU
    recording.set_meta({**recording.meta, "layer_table": table})


def row_fields(row: list) -> tuple:
    """(name, type, shape, params, flops, tied) of a stored row of five fields or six."""
    name, typ, shape, params, flops, *rest = row
    return name, typ, shape, params, flops, (rest[0] if rest and isinstance(rest[0], int) else 0)
