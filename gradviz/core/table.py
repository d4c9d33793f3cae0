"""The layer table stored in a recording's metadata (`meta["layer_table"]`), JSON-friendly.

Computed where the model lives (the training thread or process), so the GUI never needs the model.
"""

from __future__ import annotations

# what a "-" output shape means, under the CLI's and the GUI's tables
SKIPPED_NOTE = "- : not in the forward pass now (a switch is off, or the layer is unused); counted with its parameters, 0 FLOPs"


def summary_rows(model, input_shape) -> list[list]:
    """Rows [name, type, output shape, params, flops] of `summarize`, as plain lists and ints."""
    from .summary import summarize

    return [[r.name, r.type, list(r.output_shape), int(r.params), int(r.flops)] for r in summarize(model, input_shape)]
