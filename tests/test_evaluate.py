"""The evaluation command line and its prompts suite: Fréchet distances get their known answers, the prompts suite
runs end to end on a tiny pipeline with tiny feature models built here (in one process and split across two), run
parameters come from the model's settings unless a flag gives them, and importing the module leaves the shapes world
out. The shapes suite is tested in tests/shapes/test_shapes_evaluate.py."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import (
    BitImageProcessor,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    Dinov2Config,
    Dinov2Model,
    VideoMAEConfig,
    VideoMAEImageProcessor,
    VideoMAEModel,
)

from higen_core import evaluate
from higen_core.pipeline_higen import HiGenPipeline
from higen_core.shapes.world import render_video, sample_scene, write_mp4
from higen_core.testing import tiny_components, tiny_pipeline, tiny_tokenizer

SCENES = [sample_scene(seed) for seed in range(2)]
# What the first tiny model's folder recommends; the prompts suite uses what its flags leave out.
SETTINGS = {"guidance_scale": 2.5, "num_inference_steps": 2, "motion_factor": 30, "appearance_factor": 0.6}


def test_frechet_distance_known_answers():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 3))
    assert evaluate.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([1.0, -2.0, 0.5])
    assert evaluate.frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-6)
    # Covariance only: N(0, I) against N(0, 4I) in 3-d is 3 * (1 + 4 - 2 * 2) = 3.
    big = rng.normal(size=(20000, 3))
    assert evaluate.frechet_distance(big, 2 * rng.normal(size=(20000, 3))) == pytest.approx(3.0, abs=0.15)
    with pytest.raises(evaluate.EvaluationError):
        evaluate.frechet_distance(a[:1], a)


def test_undefined_figures_are_null_in_json():
    assert math.isnan(evaluate.nan_mean([math.nan, math.nan])) and evaluate.nan_mean([1.0, math.nan, 0.0]) == 0.5
    assert evaluate._json_ready({"x": math.nan, "y": [np.float32(0.5)], "z": np.bool_(True)}) == {
        "x": None, "y": [0.5], "z": True}


def test_importing_the_core_leaves_out_the_shapes_world():
    # The shapes world is a demo plug-in: the core, the evaluation command included, must work without it.
    code = ("import sys, higen_core, higen_core.pipeline_higen, higen_core.unet_higen, higen_core.evaluate; "
            "print(sorted(m for m in sys.modules if m.startswith('higen_core.shapes')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                         cwd=evaluate.Path(evaluate.__file__).parents[1])
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"


def test_run_parameters_default_to_the_model_settings():
    pipe = HiGenPipeline(**tiny_components(0), settings=SETTINGS)
    assert evaluate.run_parameters(pipe) == {"steps": 2, "guidance_scale": 2.5, "motion_factor": 30.0,
                                             "appearance_factor": 0.6}
    # What is given wins, zeros included.
    assert evaluate.run_parameters(pipe, steps=1, guidance_scale=12.0, motion_factor=0.0, appearance_factor=0.0) == {
        "steps": 1, "guidance_scale": 12.0, "motion_factor": 0.0, "appearance_factor": 0.0}
    # A folder without settings: the paper's values, γm in the middle of a trained range that excludes 500.
    assert evaluate.run_parameters(tiny_pipeline(0)) == {"steps": 50, "guidance_scale": 12.0, "motion_factor": 50.0,
                                                         "appearance_factor": 1.0}


def test_command_line_mistakes_name_their_flag(tmp_path, capsys):
    with pytest.raises(SystemExit):
        evaluate.main(["--suite", "prompts", "--prompts", "prompts.txt", "--clip-model", "clip"])
    assert "--suite prompts needs --model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.main(["--suite", "shapes", "--model", str(tmp_path / "missing")])
    assert f"--model: no such folder: {tmp_path / 'missing'}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.main(["--suite", "prompts", "--model", "tiny", "--steps", "0"])
    assert "--steps must be at least 1; got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.main(["--suite", "prompts", "--model", "tiny", "--cpu-threads", "0"])
    assert "--cpu-threads" in capsys.readouterr().err


def test_cpu_threads_are_set_before_anything_runs(capsys):
    # On a busy machine fewer threads are faster; the flag applies even to a run that then fails on its arguments.
    with pytest.raises(SystemExit):
        evaluate.main(["--suite", "prompts", "--model", "tiny", "--cpu-threads", "2"])
    assert "--prompts must name a file" in capsys.readouterr().err
    assert torch.get_num_threads() == 2


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """Two tiny pipeline folders; the first records SETTINGS."""
    folders = []
    for seed, settings in ((0, SETTINGS), (1, None)):
        folder = tmp_path_factory.mktemp(f"tiny-higen-{seed}")
        HiGenPipeline(**tiny_components(seed), settings=settings).save_pretrained(folder)
        folders.append(folder)
    return folders


@pytest.fixture(scope="module")
def feature_models(tmp_path_factory):
    """Tiny CLIP, image (DINOv2) and video (VideoMAE) models with their processors, saved like hub models."""
    root = tmp_path_factory.mktemp("feature-models")
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    clip = CLIPModel(CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 77,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 16, "patch_size": 8},
        projection_dim=16))
    size = {"shortest_edge": 16}
    crop = {"height": 16, "width": 16}
    clip.save_pretrained(root / "clip")
    CLIPProcessor(image_processor=CLIPImageProcessor(size=size, crop_size=crop),
                  tokenizer=tokenizer).save_pretrained(root / "clip")
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, image_size=16,
                             patch_size=8)).save_pretrained(root / "image")
    BitImageProcessor(size=size, crop_size=crop).save_pretrained(root / "image")
    VideoMAEModel(VideoMAEConfig(image_size=16, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32,
                                 num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)).save_pretrained(
        root / "video")
    VideoMAEImageProcessor(size=size, crop_size=crop).save_pretrained(root / "video")
    references = root / "references"
    references.mkdir()
    for i in range(2):
        write_mp4(references / f"{i}.mp4", render_video(SCENES[i], 8, 16))
    return root


def test_prompts_suite_end_to_end(tiny_model, feature_models, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle moves left\n\na blue square grows\n")
    out = tmp_path / "prompts.json"
    assert evaluate.main([
        "--suite", "prompts", "--model", str(tiny_model[0]), "--prompts", str(prompts), "--steps", "1",
        "--clip-model", str(feature_models / "clip"), "--reference-videos", str(feature_models / "references"),
        "--fid-model", str(feature_models / "image"), "--video-feature-model", str(feature_models / "video"),
        "--json", str(out), "--device", "cpu",
    ]) == 0
    result = json.loads(out.read_text())
    assert result["samples"] == 2 and result["reference_videos"] == 2
    assert [p["prompt"] for p in result["per_prompt"]] == ["a red circle moves left", "a blue square grows"]
    assert -1.0 <= result["clipsim"] <= 1.0 and -1.0 <= result["temporal_consistency"] <= 1.0
    assert result["fid"] >= 0.0 and result["fvd"] >= 0.0
    # --steps given, the rest from the model's settings: the values used are in the JSON and printed.
    assert (result["steps"], result["guidance_scale"]) == (1, 2.5)
    assert (result["motion_factor"], result["appearance_factor"]) == (30.0, 0.6)
    printed = capsys.readouterr().out
    assert "clipsim" in printed and "1 ddim steps, guidance 2.5, motion factor 30, appearance factor 0.6" in printed


def test_prompts_split_across_processes_give_the_same_figures(tiny_model, feature_models, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle moves left\na blue square grows\na green star spins quickly\n")
    common = ["--suite", "prompts", "--model", str(tiny_model[0]), "--prompts", str(prompts), "--steps", "1",
              "--device", "cpu", "--clip-model", str(feature_models / "clip"),
              "--reference-videos", str(feature_models / "references"), "--fid-model", str(feature_models / "image"),
              "--video-feature-model", str(feature_models / "video")]
    evaluate.main(common + ["--json", str(tmp_path / "one.json")])
    # Two CPU processes (torchrun; accelerate launch does the same on GPUs): each generates a share of the prompts.
    env = {**os.environ, "PYTHONPATH": str(evaluate.Path(evaluate.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "higen_core.evaluate", *common, "--json", str(tmp_path / "two.json")],
                         check=False, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "process 1: video 3/3" in run.stderr
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    for key in ("samples", "clipsim", "temporal_consistency", "fid", "fvd"):
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-5), key


def test_feature_model_errors_name_their_flag(tiny_model, feature_models, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    common = ["--suite", "prompts", "--model", str(tiny_model[0]), "--prompts", str(prompts), "--steps", "1"]
    with pytest.raises(SystemExit):
        evaluate.main(common + ["--clip-model", str(tmp_path / "missing")])
    assert "--clip-model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.main(common + ["--clip-model", str(feature_models / "clip"),
                                "--reference-videos", str(feature_models / "references")])
    assert "--fid-model is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.main(common + ["--clip-model", str(feature_models / "clip"), "--reference-videos",
                                str(feature_models / "references"), "--fid-model", str(feature_models / "image"),
                                "--video-feature-model", str(feature_models / "references")])
    assert "--video-feature-model" in capsys.readouterr().err
