"""Commands the GUI or CLI puts on an experiment's queue; applied between two steps.

Each applied command becomes an event in the recording (the markers on every time-based chart).
`run=None` means every run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SetResidual:
    run: str | None
    on: bool


@dataclass(frozen=True)
class SetNorm:
    run: str | None
    on: bool


@dataclass(frozen=True)
class SetDropout:
    run: str | None
    p: float


@dataclass(frozen=True)
class SetLR:
    run: str | None
    lr: float


@dataclass(frozen=True)
class Pause:
    run: str | None = None


@dataclass(frozen=True)
class Resume:
    run: str | None = None


@dataclass(frozen=True)
class Step:
    """Single-step while paused: run `n` more steps, then stay paused."""

    n: int = 1


@dataclass(frozen=True)
class Restart:
    """Rebuild every run from the seed, keeping the current switches and learning rates."""


@dataclass(frozen=True)
class Stop:
    pass


Command = SetResidual | SetNorm | SetDropout | SetLR | Pause | Resume | Step | Restart | Stop
