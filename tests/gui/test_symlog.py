"""The activations view's signed log scale: the transform, when it switches on, and its ticks."""

from __future__ import annotations

import math

import numpy as np

from gradviz.gui.views import symlog


def test_forward_is_linear_near_zero_logarithmic_beyond_and_keeps_signs():
    c = 0.1
    v = np.array([-4e4, -1.0, -0.001, 0.0, 0.001, 1.0, 4e4])
    t = symlog.forward(v, c)
    assert t[3] == 0.0 and np.all(np.sign(t) == np.sign(v))
    np.testing.assert_allclose(symlog.inverse(t, c), v, rtol=1e-12, atol=1e-15)
    assert abs(t[4] / (0.001 / (c * math.log(10))) - 1) < 0.01  # about linear well within c
    assert abs(t[6] - (math.log10(4e4 / c))) < 1e-5  # a decade per unit far out
    assert np.all(np.diff(t) > 0)  # order kept


def test_threshold_switches_on_for_an_outlier_and_off_with_hysteresis():
    calm = np.array([0.4, 0.5, 0.6, 0.0, np.nan])
    assert symlog.threshold(calm) is None
    wild = np.array([0.4, 0.5, 0.6, 4e4, 0.0])
    c = symlog.threshold(wild)
    assert c == 0.1  # a power of ten at the typical magnitude (median 0.55)
    middling = np.array([0.4, 0.5, 0.6, 25.0])  # spread 45: would not switch on, does not switch off
    assert symlog.threshold(middling) is None
    assert symlog.threshold(middling, current=c) == 0.1
    assert symlog.threshold(np.array([0.4, 0.5, 0.6, 10.0]), current=c) is None
    assert symlog.threshold(np.zeros(4)) is None and symlog.threshold(np.array([np.nan])) is None


def test_ticks_are_decades_spaced_apart_and_inside_the_range():
    c = 0.1
    for lo, hi, px in ((-0.2, 5.8, 70.0), (-4.5, 4.5, 70.0), (-0.1, 2.1, 60.0), (0.0, 5.6, 400.0)):
        t = np.array(symlog.ticks(c, lo, hi, px, 33.0))
        assert t.size >= 2 and np.count_nonzero(t), (lo, hi, t)
        assert np.all((t >= lo - 1e-9) & (t <= hi + 1e-9))
        assert np.diff(t).min() * px / (hi - lo) >= 33.0 - 1e-6
        values = symlog.inverse(t, c)
        nonzero = np.abs(values[values != 0])
        np.testing.assert_allclose(np.log10(nonzero), np.round(np.log10(nonzero)), atol=1e-9)  # powers of ten
        if lo < 0 < hi and lo < -1:
            assert values.min() < 0 < values.max()
    assert len(symlog.ticks(c, 0.0, 5.6, 400.0, 33.0)) >= 4  # room: more decades labelled


def test_decade_labels_are_short():
    assert [symlog.decade_label(v) for v in (0.0, 0.01, 1.0, 1000.0, 1e4, -1e-3, -100.0)] == ["0", "0.01", "1", "1000", "1e4", "-1e-3", "-100"]
