"""Calibration profiles: the mapping, the robust statistics, and the TOML file a user can edit."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_bridge.arkit import INDEX
from avatar_bridge.signal.profile import (Profile, ProfileError, load_or_default, load_profile, profile_path,
                                   save_profile)

JAW = INDEX["jawOpen"]


def test_identity_profile_changes_nothing():
    x = np.linspace(0, 1, 52).astype(np.float32)
    np.testing.assert_allclose(Profile().apply(x), x, atol=1e-6)


def test_offset_and_range_map_neutral_to_zero_and_widest_to_one():
    p = Profile()
    p.offset[JAW], p.max[JAW] = 0.1, 0.7
    x = np.zeros(52, np.float32)
    for raw, want in ((0.1, 0.0), (0.7, 1.0), (0.4, 0.5), (0.05, 0.0), (0.9, 1.0)):
        x[JAW] = raw
        assert p.apply(x)[JAW] == pytest.approx(want, abs=1e-6)


def test_deadzone_gamma_gain_and_clamp():
    p = Profile()
    p.deadzone[JAW], p.gamma[JAW], p.gain[JAW], p.clamp_hi[JAW] = 0.2, 2.0, 1.5, 0.9
    x = np.zeros(52, np.float32)
    x[JAW] = 0.15
    assert p.apply(x)[JAW] == 0.0                                  # inside the deadzone
    x[JAW] = 0.6
    assert p.apply(x)[JAW] == pytest.approx(1.5 * 0.5 ** 2)        # (0.6-0.2)/0.8 = 0.5, squared, x1.5
    x[JAW] = 1.0
    assert p.apply(x)[JAW] == pytest.approx(0.9)                   # clamped


def test_neutral_is_the_median_so_one_bad_frame_does_not_move_it():
    rng = np.random.default_rng(0)
    samples = 0.1 + rng.normal(0, 0.01, (60, 52)).astype(np.float32)
    samples[17] = 1.0  # one frame the tracker got badly wrong
    p = Profile().with_neutral(samples)
    np.testing.assert_allclose(p.offset, 0.1, atol=0.01)


def test_range_takes_a_high_percentile_and_skips_shapes_not_made():
    rng = np.random.default_rng(0)
    samples = rng.uniform(0, 0.03, (100, 52)).astype(np.float32)
    samples[40:80, JAW] = 0.7
    samples[50, JAW] = 1.0  # a single spike is not the performer's widest jaw
    p = Profile().with_ranges(samples)
    assert p.max[JAW] == pytest.approx(0.7)
    assert p.shapes_ranged() == ["jawOpen"]


def test_profile_round_trips_through_toml(tmp_path):
    p = Profile(name="alice", filter={"mouth": {"beta": 5.0}})
    p.offset[JAW], p.max[JAW], p.gamma[JAW], p.clamp_lo[JAW] = 0.05, 0.8, 0.7, 0.1
    path = save_profile(p, tmp_path)
    assert path == tmp_path / "alice.toml"
    text = path.read_text()
    assert "[shapes.jawOpen]" in text and "eyeBlinkLeft" not in text  # only what differs
    q = load_profile("alice", tmp_path)
    for key in ("offset", "max", "gain", "gamma", "deadzone", "clamp_lo", "clamp_hi"):
        np.testing.assert_allclose(getattr(q, key), getattr(p, key), atol=1e-5)
    assert q.filter == {"mouth": {"beta": 5.0}} and q.name == "alice"


def test_missing_profile_says_where_it_looked_and_how_to_make_one(tmp_path):
    with pytest.raises(ProfileError) as err:
        load_profile("bob", tmp_path)
    assert str(tmp_path / "bob.toml") in str(err.value)
    assert "avatar-bridge calibrate --profile bob" in str(err.value)


def test_corrupt_profile_names_the_file_and_line(tmp_path):
    (tmp_path / "bad.toml").write_text('name = "bad"\n[shapes.jawOpen]\noffset = = 0.1\n')
    with pytest.raises(ProfileError) as err:
        load_profile("bad", tmp_path)
    assert str(tmp_path / "bad.toml") in str(err.value) and "line 3" in str(err.value)


def test_unknown_shape_or_bad_value_is_a_clear_error(tmp_path):
    (tmp_path / "typo.toml").write_text('[shapes.jawOpn]\noffset = 0.1\n')
    with pytest.raises(ProfileError, match="unknown blendshape 'jawOpn'"):
        load_profile("typo", tmp_path)
    (tmp_path / "neg.toml").write_text('[shapes.jawOpen]\ngamma = 0\n')
    with pytest.raises(ProfileError, match="gamma must be > 0"):
        load_profile("neg", tmp_path)


def test_without_a_name_the_default_profile_or_identity_is_used(tmp_path):
    assert load_or_default(None, tmp_path).name == "default"
    with pytest.raises(ProfileError):
        load_or_default("nobody", tmp_path)
    with pytest.raises(ProfileError, match="plain file name"):
        profile_path("../etc", tmp_path)
