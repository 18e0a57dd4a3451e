"""``plot``: a PNG of the requested size with the chosen (or most-moving) curves and blinks marked."""

from __future__ import annotations

from matplotlib import image as mpimg
from typer.testing import CliRunner

from avatar_bridge.cli import app
from avatar_bridge.takes.plot import PlotConfig, blink_onsets, most_moving, plot_take
from avatar_bridge.takes.format import read_take
from helpers import write_synthetic



def test_plot_writes_a_png_of_the_requested_size_with_the_chosen_curves(tmp_path):
    write_synthetic(tmp_path / "take.abr", 180)
    take = read_take(tmp_path / "take.abr")
    result = plot_take(take, tmp_path / "take.png", PlotConfig(shapes=("jawOpen", "mouthSmileLeft"),
                                                               width_px=1200, height_px=700))
    pixels = mpimg.imread(tmp_path / "take.png")
    assert pixels.shape[:2] == (700, 1200)
    assert result.shapes == ["jawOpen", "mouthSmileLeft"]
    assert pixels[..., :3].std() > 0.05   # something was drawn, not a blank canvas


def test_default_curves_are_the_shapes_that_moved_most_and_blinks_are_found(tmp_path):
    write_synthetic(tmp_path / "take.abr", 180)          # 3 s: jawOpen, browInnerUp swing; blinks once a second
    take = read_take(tmp_path / "take.abr")
    assert set(most_moving(take.blendshapes, 4)) == {"jawOpen", "browInnerUp", "eyeBlinkLeft", "eyeBlinkRight"}
    assert blink_onsets(take.times - take.times[0], take.blendshapes) == [0.0, 1.0, 2.0]


def test_plot_command_defaults_and_rejects_unknown_shapes(tmp_path):
    write_synthetic(tmp_path / "take.abr", 120)
    runner = CliRunner()
    out = tmp_path / "p.png"
    result = runner.invoke(app, ["plot", str(tmp_path / "take.abr"), "--out", str(out), "--top", "3"])
    assert result.exit_code == 0, result.output
    assert mpimg.imread(out).shape[:2] == (900, 1600) and "2 blinks" in result.output
    bad = runner.invoke(app, ["plot", str(tmp_path / "take.abr"), "--out", str(out), "--shapes", "jawOpen,smile"])
    assert bad.exit_code == 1 and "unknown blendshape(s) smile" in bad.output
