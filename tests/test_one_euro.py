"""The vectorised One Euro filter against the paper's algorithm, channel by channel."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avatar_bridge.signal.one_euro import OneEuroFilter, smoothing_factor
from helpers import ScalarOneEuro


def test_each_channel_matches_the_papers_algorithm_with_its_own_parameters():
    rng = np.random.default_rng(1)
    params = [(0.5, 0.0, 1.0), (1.0, 2.0, 1.0), (0.2, 20.0, 0.5), (3.0, 0.5, 5.0)]
    vec = OneEuroFilter(4, *[np.array(p) for p in zip(*params)])
    refs = [ScalarOneEuro(*p) for p in params]
    t = 0.0
    for i in range(200):
        t += rng.uniform(0.01, 0.05)  # irregular frame times, as from a real camera
        x = np.sin(i / 10) + rng.normal(0, 0.05, 4) + (i > 100)
        got = vec(x, t)
        want = [r(float(xi), t) for r, xi in zip(refs, x)]
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_channels_do_not_share_state():
    f = OneEuroFilter(2, 1.0, 1.0)
    g = OneEuroFilter(1, 1.0, 1.0)
    for i in range(30):
        out = f(np.array([0.0, 1.0 if i > 10 else 0.0]), i / 30)
        alone = g(np.array([0.0]), i / 30)
        assert out[0] == alone[0] == 0.0


def test_without_beta_it_is_the_exponential_filter_with_the_textbook_jitter_and_lag():
    dt, mc = 1 / 30, 1.0
    a = float(smoothing_factor(mc, dt))
    rng = np.random.default_rng(0)
    f = OneEuroFilter(2000, mc, 0.0)
    ys = [f(0.5 + rng.normal(0, 0.03, 2000), i * dt) for i in range(200)]
    ratio = np.std(np.array(ys)[100:]) / 0.03
    assert ratio == pytest.approx(math.sqrt(a / (2 - a)), rel=0.05)  # variance of an EMA of white noise

    f = OneEuroFilter(1, mc, 0.0)
    f(np.zeros(1), 0.0)
    n = next(k for k in range(1, 100) if f(np.ones(1), k * dt)[0] >= 0.9)
    assert n == math.ceil(math.log(0.1) / math.log(1 - a))


def test_duplicate_timestamp_keeps_the_last_output_and_reset_forgets():
    f = OneEuroFilter(1, 1.0, 0.0)
    f(np.array([0.0]), 1.0)
    y = f(np.array([1.0]), 1.1)
    assert f(np.array([5.0]), 1.1)[0] == y[0]
    f.reset()
    assert f(np.array([5.0]), 2.0)[0] == 5.0


def test_rejects_parameters_that_would_divide_by_zero():
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroFilter(3, np.array([1.0, 0.0, 1.0]))


def test_snap_passes_a_blink_sized_jump_at_once_but_still_smooths_jitter():
    rng = np.random.default_rng(1)
    f = OneEuroFilter(1, min_cutoff=0.3, beta=1.0, snap=0.25)
    noisy = 0.1 + rng.normal(0, 0.02, 90)
    out = [f(np.array([x]), i / 30)[0] for i, x in enumerate(noisy)]
    assert np.std(out[30:]) < np.std(noisy[30:]) / 2   # jitter (a few hundredths) stays filtered
    assert f(np.array([0.95]), 90 / 30)[0] == pytest.approx(0.95)   # a blink's first frame: full depth
    plain = OneEuroFilter(1, min_cutoff=0.3, beta=1.0)
    for i, x in enumerate(noisy):
        plain(np.array([x]), i / 30)
    assert plain(np.array([0.95]), 90 / 30)[0] < 0.6   # without the snap it lags behind
