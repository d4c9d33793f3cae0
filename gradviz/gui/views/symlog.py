"""A signed logarithmic scale for per-layer statistics that span decades on both sides of zero.

An N(0, 1)-initialised layer's activations reach a std of 4e4 while its neighbours' are near 0.5:
on a linear axis every other run lies flat on zero. `forward(v, c) = sign(v) log10(1 + |v| / c)`
is linear within `c` of zero (so 0 stays 0, and signs stay apart) and logarithmic beyond it.
"""

from __future__ import annotations

import math

import numpy as np

SPREAD_ON = 100.0  # the largest |value| this many times the typical one: a linear axis flattens the rest
SPREAD_OFF = 30.0  # back to linear only well below that, so a live plot does not flicker between scales


def forward(values: np.ndarray, c: float) -> np.ndarray:
    v = np.asarray(values, np.float64)
    return np.sign(v) * np.log10(1.0 + np.abs(v) / c)


def inverse(t: np.ndarray, c: float) -> np.ndarray:
    t = np.asarray(t, np.float64)
    return np.sign(t) * c * (10.0 ** np.abs(t) - 1.0)


def threshold(values: np.ndarray, current: float | None = None) -> float | None:
    """The linear range `c` (a power of ten near the typical nonzero |value|) when a linear axis
    would flatten most values under one outlier, else None. `current`: the scale in use, kept
    until the spread falls well below the switching point."""
    a = np.abs(np.asarray(values, np.float64))
    a = a[np.isfinite(a) & (a > 0)]
    if a.size == 0:
        return None
    typical = float(np.median(a))
    spread = float(a.max()) / typical
    if spread <= (SPREAD_OFF if current is not None else SPREAD_ON):
        return None
    return 10.0 ** math.floor(math.log10(typical))


def decade_label(value: float) -> str:
    """'0', '0.01', '1000', '1e4', '-1e-3': the nearest signed power of ten, short."""
    if value == 0 or not math.isfinite(value):
        return "0"
    k = round(math.log10(abs(value)))
    sign = "-" if value < 0 else ""
    return f"{sign}{10.0**k:g}" if -2 <= k <= 3 else f"{sign}1e{k}"


def ticks(c: float, lo: float, hi: float, px: float, gap_px: float) -> list[float]:
    """Tick positions (in transformed units) for the view range [lo, hi] drawn `px` long: 0 and
    signed powers of ten from `c` up, every decade or every few, so that neighbours are at least
    `gap_px` apart."""
    if not (hi > lo) or px <= 0:
        return []
    top = max(abs(lo), abs(hi))
    k0 = round(math.log10(c))
    k1 = k0 + max(1, math.ceil(top)) + 1  # forward(10^k) is about k - k0 + log10(1 + ...) past c
    scale = px / (hi - lo)
    for zero in (True, False):  # a short axis across 0 keeps "-1e4" and "1e4" rather than "0" alone
        for every in range(1, k1 - k0 + 2):
            for phase in range(every):  # from the decade nearest the top down: the outermost is labelled
                ks = [k for k in range(k0, k1 + 1) if (k1 - k - phase) % every == 0]
                pos = forward(np.array([10.0**k for k in ks]), c)
                cand = np.concatenate([-pos[::-1], [0.0] if zero else [], pos])
                cand = cand[(cand >= lo - 1e-9) & (cand <= hi + 1e-9)]
                if np.count_nonzero(cand) and cand.size >= 2 and np.diff(cand).min() * scale >= gap_px:
                    return [float(t) for t in cand]
    return [0.0] if lo <= 0 <= hi else []
