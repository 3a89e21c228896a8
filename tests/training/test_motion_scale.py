"""`python -m higen_core.training.motion_scale`: every motion-factor measure's percentiles on a run's clips, read and
encoded as the trainer does, beside the model's own measure and range."""

import json
from pathlib import Path

from higen_core.conditioning import MOTION_FACTOR_MEASURES
from higen_core.training.motion_scale import main

REPO = Path(__file__).resolve().parents[2]
TINY = ["--config", str(REPO / "higen_core" / "configs" / "train-tiny.yaml"),
        "--video-data", str(REPO / "assets" / "tiny-data"), "--image-data", str(REPO / "assets" / "tiny-data")]


def test_reports_every_measure_on_the_runs_clips(capsys):
    assert main(TINY + ["--clips", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == {"motion_factor_measure": "scaled:l2", "motion_factor_range": [0.0, 100.0]}
    assert report["clips"] == 3 and report["size"] == [8, 16, 16, 8.0]
    assert list(report["measures"]) == list(MOTION_FACTOR_MEASURES)
    for row in report["measures"].values():
        assert row["pairs"] == sorted(row["pairs"]) and row["clips"] == sorted(row["clips"])
        assert 0 <= row["clips_in_range"] <= 1
    # Unscaled latents are the scaled ones over the VAE's scaling factor (the tiny VAE has SD's 0.18215).
    for scaled, unscaled in zip(report["measures"]["scaled:l1"]["pairs"], report["measures"]["unscaled:l1"]["pairs"]):
        assert abs(unscaled - scaled / 0.18215) <= 0.5 / 0.18215 + 0.5

    assert main(TINY + ["--clips", "2", "--motion-factor-measure", "scaled:l1"]) == 0
    table = capsys.readouterr().out
    assert "2 clips of 8 frames, 16x16 at 8 fps; the model measures scaled:l1" in table
    assert [line.split()[0] for line in table.splitlines() if line.endswith("<- the model's")] == ["scaled:l1"]


def test_bad_input_gets_the_trainers_error(capsys):
    assert main(TINY + ["--clips", "0"]) == 2
    assert capsys.readouterr().err == "error: clips: must be at least 1; got 0.\n"
    assert main(["--image-data", str(REPO / "assets" / "tiny-data"), "--image-fraction", "1"]) == 2
    assert "error: video_data: give the videos to measure" in capsys.readouterr().err
