"""The command line, end to end on a tiny saved pipeline: files, settings, determinism and one-line errors."""

import contextlib
import io
import json

import av
import numpy as np
import PIL.Image
import pytest

from higen_core import video_io
from higen_core.generate import PROG, main
from higen_core.pipeline_higen import HiGenPipeline
from higen_core.testing import add_random_lora_, tiny_components, tiny_pipeline

SETTING_KEYS = {"model", "prompt", "motion_prompt", "negative_prompt", "seed", "motion_factor", "appearance_factor",
                "num_frames", "num_inference_steps", "guidance_scale", "height", "width", "fps", "scheduler",
                "feature_cache_interval"}
# 50 is inside the tiny model's motion-factor range (0-100); 3 frames and one step keep a run under a second.
FAST = ["--prompt", "a red cube", "--motion-factor", "50", "--frames", "3", "--steps", "1", "--guidance", "5"]
MOTIONS = ["it rolls left", "it jumps ☃"]
MOTION_ARGS = [arg for motion in MOTIONS for arg in ("--motion-prompt", motion)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-higen")
    tiny_pipeline().save_pretrained(folder)
    return folder


def generate(*argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one in-process run."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def batch(model_dir, tmp_path_factory):
    """One run with two motion prompts, shared by the tests that read its files."""
    folder = tmp_path_factory.mktemp("batch") / "new-folder"  # a missing output folder is created
    code, out, err = generate("--model", model_dir, *FAST, *MOTION_ARGS, "--seed", 3, "--out", folder / "clip.mp4")
    assert code == 0, err
    return folder, out, err


def test_two_motion_prompts_make_two_mp4s_a_prior_and_their_settings(batch, model_dir):
    folder, out, err = batch
    names = ["clip_prior.png", "clip_0.mp4", "clip_0.json", "clip_1.mp4", "clip_1.json"]
    assert out.split() == [str(folder / name) for name in names]  # every written path, nothing else
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)
    assert "Spatial prior" in err and "Animating" in err  # the pipeline's progress bars stayed on

    with PIL.Image.open(folder / "clip_prior.png") as prior:
        assert prior.size == (16, 16)
    for index, motion in enumerate(MOTIONS):
        video = folder / f"clip_{index}.mp4"
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert video_io.read_mp4_frames(video).shape == (3, 16, 16, 3)
        settings = json.loads((folder / f"clip_{index}.json").read_text(encoding="utf-8"))
        assert video_io.read_mp4_metadata(video) == settings
        assert set(settings) == SETTING_KEYS
        assert settings["motion_prompt"] == motion and settings["prompt"] == "a red cube"
        assert settings["model"] == str(model_dir) and settings["negative_prompt"] == ""
        assert (settings["seed"], settings["num_frames"], settings["height"], settings["width"]) == (3, 3, 16, 16)
        assert (settings["motion_factor"], settings["appearance_factor"], settings["num_inference_steps"]) == (50, 1, 1)
        assert (settings["guidance_scale"], settings["fps"]) == (5, 8)


def test_same_seed_same_video_and_each_video_seeded_on_its_own(batch, model_dir, tmp_path):
    folder, _, _ = batch
    assert generate("--model", model_dir, *FAST, *MOTION_ARGS, "--seed", 3, "--out", tmp_path / "again.mp4")[0] == 0
    for index in range(2):
        np.testing.assert_array_equal(video_io.read_mp4_frames(tmp_path / f"again_{index}.mp4"),
                                      video_io.read_mp4_frames(folder / f"clip_{index}.mp4"))
    with PIL.Image.open(tmp_path / "again_prior.png") as again, PIL.Image.open(folder / "clip_prior.png") as first:
        np.testing.assert_array_equal(np.asarray(again), np.asarray(first))

    # The second motion prompt alone gives the second video of the batch (up to batched float rounding) ...
    assert generate("--model", model_dir, *FAST, "--motion-prompt", MOTIONS[1], "--seed", 3,
                    "--out", tmp_path / "alone.mp4")[0] == 0
    np.testing.assert_allclose(video_io.read_mp4_frames(tmp_path / "alone.mp4").astype(float),
                               video_io.read_mp4_frames(folder / "clip_1.mp4").astype(float), atol=2)
    # ... and another seed another video; as a GIF, with its settings beside it.
    assert generate("--model", model_dir, *FAST, "--motion-prompt", MOTIONS[1], "--seed", 4,
                    "--out", tmp_path / "other.gif")[0] == 0
    with PIL.Image.open(tmp_path / "other.gif") as gif:
        assert gif.n_frames == 3 and gif.info["loop"] == 0
        gif.seek(2)
        last = np.asarray(gif.convert("RGB")).astype(int)
    assert np.abs(last - video_io.read_mp4_frames(folder / "clip_1.mp4")[2]).mean() > 10
    assert json.loads((tmp_path / "other.json").read_text())["seed"] == 4


def test_fast_presets_are_opt_in_and_recorded(model_dir, tmp_path):
    fast = [a if a != "1" else "3" for a in FAST]  # three steps: a cached step between whole ones
    outputs = {}
    for name, presets in (("exact", []), ("fast", ["--scheduler", "dpm", "--feature-cache-interval", "2"])):
        assert generate("--model", model_dir, *fast, *presets, "--out", tmp_path / f"{name}.mp4")[0] == 0
        outputs[name] = video_io.read_mp4_frames(tmp_path / f"{name}.mp4").astype(int)
    settings = json.loads((tmp_path / "fast.json").read_text())
    assert (settings["scheduler"], settings["feature_cache_interval"]) == ("dpm", 2)
    assert json.loads((tmp_path / "exact.json").read_text())["scheduler"] == "ddim"
    assert np.abs(outputs["fast"] - outputs["exact"]).max() > 0


def not_a_higen_folder(tmp_path):
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return tmp_path / "sd"


@pytest.mark.parametrize("change, message, checked_before_loading", [
    (lambda tmp: {"--model": tmp / "missing"}, "no such folder", True),
    (lambda tmp: {"--model": tmp}, "has no model_index.json", True),
    (lambda tmp: {"--model": not_a_higen_folder(tmp)}, "holds a StableDiffusionPipeline, not a HiGenPipeline", True),
    (lambda tmp: {"--out": tmp / "clip.avi"}, "--out must end with .mp4 or .gif", True),
    (lambda tmp: {"--out": tmp / "a-file" / "clip.mp4"}, "cannot write to the output folder", True),
    (lambda tmp: {"--appearance-factor": "1.5"}, "appearance_factor must be a number in [0, 1]; got 1.5.", False),
], ids=["missing-model", "not-a-pipeline", "other-pipeline", "extension", "unwritable", "factor"])
def test_mistakes_end_in_one_clean_line(model_dir, tmp_path, change, message, checked_before_loading):
    (tmp_path / "a-file").write_text("")
    args = {"--model": model_dir, "--out": tmp_path / "clip.mp4", **change(tmp_path)}
    code, out, err = generate(*FAST, *[item for pair in args.items() for item in pair])
    assert code == 2 and out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert lines[-1] == f"{PROG}: error: {lines[-1].split(': error: ', 1)[1]}" and message in lines[-1]
    if checked_before_loading:
        assert len(lines) == 1  # nothing loaded, nothing run: the one line is all
    assert [p.name for p in tmp_path.iterdir() if p.suffix in (".mp4", ".gif", ".png", ".json")] == []


def test_malformed_arguments_are_argparse_errors(model_dir, tmp_path):
    code, _, err = generate("--model", model_dir, "--out", tmp_path / "clip.mp4")
    assert code == 2 and "the following arguments are required: --prompt" in err
    code, _, err = generate("--model", model_dir, *FAST, "--steps", "0", "--out", tmp_path / "clip.mp4")
    assert code == 2 and "--steps: 0 is out of range" in err and "Traceback" not in err


def test_defaults_come_from_the_model_folders_settings(tmp_path, caplog):
    """Left out, γm, γa, guidance, steps and frame rate are what the folder recommends; no range warning."""
    settings = {"motion_factor": 30, "motion_factor_range": [10, 40], "appearance_factor": 0.3,
                "guidance_scale": 2.5, "num_inference_steps": 2, "fps": 12}
    pipe = HiGenPipeline(**tiny_components(), settings=settings)
    pipe.save_pretrained(tmp_path / "model")
    code, _, err = generate("--model", tmp_path / "model", "--prompt", "a red cube", "--frames", "3",
                            "--out", tmp_path / "clip.mp4")
    assert code == 0, err
    written = json.loads((tmp_path / "clip.json").read_text())
    assert (written["motion_factor"], written["appearance_factor"], written["guidance_scale"]) == (30, 0.3, 2.5)
    assert (written["num_inference_steps"], written["fps"]) == (2, 12)
    assert "outside" not in err + caplog.text  # no "motion_factor ... is outside the range" warning
    # A flag still wins over the folder's value.
    assert generate("--model", tmp_path / "model", "--prompt", "a red cube", "--frames", "3", "--guidance", "4",
                    "--out", tmp_path / "other.mp4")[0] == 0
    assert json.loads((tmp_path / "other.json").read_text())["guidance_scale"] == 4


def test_a_mistyped_relative_folder_is_no_such_folder_not_a_hub_error(tmp_path, monkeypatch):
    (tmp_path / "assets").mkdir()
    monkeypatch.chdir(tmp_path)
    code, out, err = generate("--model", "assets/shape-model", "--prompt", "a", "--out", "clip.mp4")
    assert code == 2 and err.strip() == (f"{PROG}: error: no such folder: assets/shape-model. Give a pipeline folder "
                                         f"or a hub id (owner/name).")
    assert not (tmp_path / "clip.mp4").exists()


def test_a_lora_changes_the_video_at_its_scale_and_is_recorded(model_dir, tmp_path):
    lora = tmp_path / "my-lora"
    HiGenPipeline.save_lora_weights(lora, unet_lora_layers=add_random_lora_(tiny_pipeline(), std=0.2))
    frames = {}
    for name, extra in (("base", []), ("zero", ["--lora", lora, "--lora-scale", "0"]), ("lora", ["--lora", lora])):
        code, _, err = generate("--model", model_dir, *FAST, *extra, "--out", tmp_path / f"{name}.mp4")
        assert code == 0, err
        frames[name] = video_io.read_mp4_frames(tmp_path / f"{name}.mp4").astype(int)
    assert np.array_equal(frames["zero"], frames["base"]) and np.abs(frames["lora"] - frames["base"]).max() > 0
    settings = json.loads((tmp_path / "lora.json").read_text())
    assert (settings["lora"], settings["lora_scale"]) == (str(lora), 1.0)
    code, _, err = generate("--model", model_dir, *FAST, "--lora", tmp_path / "nowhere", "--out", tmp_path / "x.mp4")
    assert code == 2 and "no such LoRA folder or file" in err
