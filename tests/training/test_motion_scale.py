"""`python -m higen_core.training.motion_scale`: every motion-factor measure's percentiles on a run's clips, read and
encoded as the trainer does, beside the model's own measure and range."""

import json
import sys
from pathlib import Path

from higen_core.conditioning import MOTION_FACTOR_MEASURES
from higen_core.training.motion_scale import main

REPO = Path(__file__).resolve().parents[2]
TINY = ["--config", str(REPO / "higen_core" / "configs" / "train-tiny.yaml"),
        "--video-data", str(REPO / "assets" / "tiny-data"), "--image-data", str(REPO / "assets" / "tiny-data")]


def test_reports_every_measure_on_the_runs_clips(capsys):
    assert main(TINY + ["--clips", "3", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('{\n  "model": {\n    "motion_factor_measure"')  # indented for reading
    report = json.loads(out)
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


def test_help_and_the_table_read_as_documented(capsys, monkeypatch):
    for flag in ("--help", "-h"):
        assert main([flag]) == 0
        out = capsys.readouterr().out
        assert out.startswith("What the motion factor measures on your clips")
        assert out.endswith("\n\n--clips N: clips to measure, one per video from the first (default 64); --json: print the "
                            "report as JSON; every training field as in `python -m higen_core.train --help`.\n")
    monkeypatch.setattr(sys, "argv", ["motion_scale"] + TINY + ["--clips", "1"])  # one clip is enough
    assert main() == 0
    header, *rows = capsys.readouterr().out.splitlines()[1:]
    assert header.split() == ["measure", "frame", "pairs", "p10/p50/p90", "clip", "means", "p10/p50/p90", "clips",
                              "in", "range"]
    assert len(header) == 20 + 1 + 28 + 1 + 28 + 1 + 15  # the columns the rows are aligned to
    assert [row.split()[0] for row in rows] == list(MOTION_FACTOR_MEASURES)
    for row in rows:
        measure, pairs, clips, in_range = row.split()[:4]
        assert len(pairs.split("/")) == 3 and len(clips.split("/")) == 3 and in_range.endswith("%")
        assert row.endswith("%") or row.endswith("  <- the model's")
