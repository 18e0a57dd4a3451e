"""The documented mapping tables cover all 52 ARKit shapes and match the code."""

from pathlib import Path

import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX
from avatar_bridge.adapters.ifacialmocap import IFM_NAMES
from avatar_bridge.adapters.unified_expressions import (GAZE_PARAMS, PARAM_NAMES, UNIFIED_PARAMS, arkit_to_unified,
                                                        unified_values)
from avatar_bridge.adapters.vmc import VMC_PERFECT_SYNC_NAMES

DOC = (Path(__file__).resolve().parents[1] / "docs" / "mappings.md").read_text(encoding="utf-8")


def test_every_arkit_shape_drives_at_least_one_unified_expression():
    table = arkit_to_unified()
    assert set(table) == set(ARKIT_BLENDSHAPES)
    assert all(table[name] for name in ARKIT_BLENDSHAPES)
    assert all(t in PARAM_NAMES for targets in table.values() for t in targets)


def test_every_arkit_shape_has_one_vmc_perfect_sync_name():
    assert len(VMC_PERFECT_SYNC_NAMES) == 52 == len(set(VMC_PERFECT_SYNC_NAMES))
    assert [n.lower() for n in VMC_PERFECT_SYNC_NAMES] == [n.lower() for n in ARKIT_BLENDSHAPES]
    assert VMC_PERFECT_SYNC_NAMES[0] == "EyeBlinkLeft" and VMC_PERFECT_SYNC_NAMES[-1] == "TongueOut"
    assert len(set(IFM_NAMES)) == 52 and "eyeBlink_L" in IFM_NAMES and "mouthSmile_R" in IFM_NAMES


def test_the_documented_table_lists_every_shape_and_its_targets():
    table = arkit_to_unified()
    for i, (arkit, vmc) in enumerate(zip(ARKIT_BLENDSHAPES, VMC_PERFECT_SYNC_NAMES)):
        row = f"| {i} | `{arkit}` | `{vmc}` | " + ", ".join(f"`{t}`" for t in table[arkit]) + " |"
        assert row in DOC, f"docs/mappings.md row for {arkit} is missing or stale"
    for p in UNIFIED_PARAMS:
        assert f"| `{p.name}` |" in DOC
    for g in GAZE_PARAMS:
        assert f"`{g}`" in DOC


def test_unified_values_follow_vrcft_formulas():
    bs = np.zeros(52, np.float32)
    bs[INDEX["jawLeft"]] = 0.4
    bs[INDEX["eyeBlinkRight"]] = 1.0
    bs[INDEX["eyeWideLeft"]] = 0.2
    v = dict(zip([p.name for p in UNIFIED_PARAMS], unified_values(bs)))
    assert v["JawX"] == np.float32(-0.4)
    assert v["EyeLidRight"] == 0.0 and abs(v["EyeLidLeft"] - (0.75 + 0.05)) < 1e-6
    assert v["JawOpen"] == 0.0
