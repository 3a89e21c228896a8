"""The evaluation: every measurement gets the known answer on rendered ground-truth clips, and both suites run end to
end on tiny models (the shapes suite on the tiny pipeline, the prompts suite with tiny feature models built here)."""

import json
import math
import os
import subprocess
import sys
from types import SimpleNamespace

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
from higen_core.shapes.world import render_video, sample_scene, write_mp4
from higen_core.testing import tiny_pipeline, tiny_tokenizer

SCENES = [sample_scene(seed) for seed in range(240)]


def test_ground_truth_clips_adhere_to_their_captions():
    records = []
    for s in SCENES[:120]:
        clip = render_video(s, 8, 64)
        records.append(evaluate.measure_standard(clip, clip[len(clip) // 2], s.caption))
    summary = evaluate.summarise_standard(records)
    assert summary["text_adherence"] == 1.0 and summary["temporal_consistency"] == 1.0
    assert set(summary["text_motion_accuracy_by_motion"]) == {s.motion for s in SCENES[:120]}
    # Prior fidelity holds on ground truth for every motion (a colour change starts after the middle frame).
    assert all(r["prior_ok"] is True for r in records)
    assert "changes colour" in summary["text_motion_accuracy_by_motion"]


def test_mismatches_are_caught(one_shape_scene):
    left = render_video(one_shape_scene("moves left"), 8, 64)
    record = evaluate.measure_standard(left, left[4], one_shape_scene("moves right").caption)
    assert record["colour_ok"] and not record["motion_ok"] and not record["adheres"]
    record = evaluate.measure_standard(left, left[4], one_shape_scene("moves left", colour="blue").caption)
    assert not record["colour_ok"]
    # A prior somewhere else: the video does not follow it.
    elsewhere = render_video(one_shape_scene("stays still", None, x=0.8), 1, 64)[0]
    assert evaluate.measure_standard(left, elsewhere, one_shape_scene("moves left").caption)["prior_ok"] is False


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


def test_within_sample_correlations_are_free_of_the_spread_between_scenes(monkeypatch):
    # Each scene's videos get more motion as γm rises, but scenes differ far more than the factor's steps: the pooled
    # correlation is weak, the within-sample one is exact.
    scenes = {scene.seed: i for i, scene in enumerate(evaluate.eval_scenes(0, 3))}

    def fake_sample(pipe, scene, requests, steps, guidance_scale, feature_cache_interval=1):
        videos = []
        for caption, motion_factor, appearance_factor in requests:
            amplitude = 0.02 * motion_factor + 0.3 * scenes[scene.seed]
            video = np.full((8, 8, 8, 3), 0.1) + (np.arange(8) % 2)[:, None, None, None] * amplitude
            video[-1] += 0.1 * appearance_factor
            videos.append(video)
        return np.full((8, 8, 3), 0.1), np.stack(videos)

    monkeypatch.setattr(evaluate, "generate_sample", fake_sample)
    monkeypatch.setattr(evaluate, "motion_word_gap", lambda *args, **kwargs: {})
    pipe = SimpleNamespace(unet=SimpleNamespace(config=SimpleNamespace(motion_factor_range=(0, 3))))
    result = evaluate.run_shapes(pipe, samples=3, steps=1, seed=0, guidance_scale=1.0, standard_motion="fixed")
    assert result["motion_factor_spearman_within"] == pytest.approx(1.0)
    assert result["appearance_factor_spearman_within"] == pytest.approx(1.0)
    assert result["motion_factor_spearman"] < 0.5


def test_standard_videos_ask_for_the_motion_factor_of_their_scene_clip(monkeypatch):
    # A still scene's ground-truth clip has γm 0 and a moving one's more: the standard video asks for that, while the
    # sweep and the left/right videos keep the fixed γm.
    pipe = tiny_pipeline(0)
    scenes = evaluate.eval_scenes(0, 40)
    still = next(s for s in scenes if s.motion == "stays still")
    moving = next(s for s in scenes if s.motion.startswith("moves") and s.speed == "quickly")
    assert evaluate.clip_motion_factor(pipe, still) == 0.0
    assert evaluate.clip_motion_factor(pipe, moving) > 0.0
    asked = []

    def fake_sample(pipe, scene, requests, steps, guidance_scale, feature_cache_interval=1):
        asked.append((scene, requests))
        return np.zeros((8, 8, 3)), np.zeros((len(requests), 2, 8, 8, 3))

    monkeypatch.setattr(evaluate, "eval_scenes", lambda seed, count: [still, moving][:count])
    monkeypatch.setattr(evaluate, "generate_sample", fake_sample)
    monkeypatch.setattr(evaluate, "motion_word_gap",
                        lambda *args, **kwargs: {"motion_word_gap": 0.0, "motion_word_wins": 0.5})
    result = evaluate.run_shapes(pipe, samples=2, steps=1, seed=0, guidance_scale=1.0, motion_factor=5.0)
    for scene, requests in asked:
        assert requests[-1][1] == evaluate.clip_motion_factor(pipe, scene)
        assert {gm for _, gm, _ in requests[4:-1]} == {5.0}  # the γa sweep and left/right
    assert [r["standard_motion_factor"] for r in result["per_sample"]][0] == 0.0
    asked.clear()
    evaluate.run_standard(pipe, 2, 1, 0, 1.0, motion_factor=5.0, appearance_factor=1.0, standard_motion="fixed")
    assert [requests[-1][1] for _, requests in asked] == [5.0, 5.0]


def test_mirrored_captions_reverse_only_the_direction():
    assert evaluate.mirrored_caption("a red circle moves left quickly on a grey background") == (
        "a red circle moves right quickly on a grey background")
    two = "a white star and a blue square move up slowly on a cyan background"
    assert evaluate.mirrored_caption(two) == "a white star and a blue square move down slowly on a cyan background"
    assert evaluate.mirrored_caption(evaluate.mirrored_caption(two)) == two
    assert evaluate.mirrored_caption("a red circle grows quickly on a grey background").endswith("grows quickly on a "
                                                                                                 "grey background")
    assert evaluate.size_swapped_caption("a red circle grows quickly on a grey background") == (
        "a red circle shrinks quickly on a grey background")
    two = "a white star and a blue square shrink slowly on a black background"
    assert evaluate.size_swapped_caption(two) == "a white star and a blue square grow slowly on a black background"


def test_motion_word_gap_is_zero_for_a_model_that_ignores_its_text(monkeypatch):
    pipe = tiny_pipeline(0)
    real = evaluate.motion_word_gap(pipe, seed=0, clips=3, size_clips=2)
    assert real["motion_word_clips"] == 3 and math.isfinite(real["motion_word_gap"])
    assert real["motion_word_gap"] != 0.0  # the tiny model's output depends on its caption
    assert real["size_word_clips"] == 2 and real["size_word_gap"] != 0.0
    # Every caption encoded alike: the mirrored direction cannot change the loss.
    same = evaluate.text_states(pipe.tokenizer, pipe.text_encoder, ["a red circle"])
    monkeypatch.setattr(evaluate, "text_states", lambda tokenizer, encoder, captions: same)
    ignored = evaluate.motion_word_gap(pipe, seed=0, clips=3, size_clips=2)
    assert ignored["motion_word_gap"] == 0.0 and ignored["motion_word_wins"] == 0.0
    assert ignored["size_word_gap"] == 0.0 and ignored["size_word_wins"] == 0.0


def test_undefined_figures_are_null_in_json():
    assert math.isnan(evaluate.spearman([0, 1, 2], [1.0, 1.0, 1.0]))
    assert evaluate._json_ready({"x": math.nan, "y": [np.float32(0.5)], "z": np.bool_(True)}) == {
        "x": None, "y": [0.5], "z": True}


# ---------------------------------------------------------------------------------------------------------------
# End to end


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folders = []
    for seed in (0, 1):
        folder = tmp_path_factory.mktemp(f"tiny-higen-{seed}")
        tiny_pipeline(seed).save_pretrained(folder)
        folders.append(folder)
    return folders


FIGURES = ("motion_factor_spearman", "appearance_factor_spearman", "direction_accuracy", "prior_fidelity",
           "text_adherence", "motion_factor_spearman_within", "appearance_factor_spearman_within", "motion_word_gap")


def test_shapes_suite_end_to_end(tiny_model, tmp_path, capsys):
    main, other = tiny_model
    out = tmp_path / "shapes.json"
    argv = ["--suite", "shapes", "--model", str(main), "--samples", "2", "--steps", "1", "--device", "cpu",
            "--json", str(out), "--ablation", str(other), str(main), "--ablation-names", "baseline", "both"]
    try:
        import matplotlib  # noqa: F401

        argv += ["--plots", str(tmp_path / "plots")]
    except ImportError:
        pass
    assert evaluate.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["samples"] == 2 and isinstance(result["samples"], int)
    for key in FIGURES:
        assert result[key] is None or isinstance(result[key], float), key
    assert result["counts"] == {"motion_videos": 8, "appearance_videos": 8, "direction_videos": 4,
                                "standard_videos": 2, "prior_videos": 2}
    assert [row["name"] for row in result["ablation"]] == ["baseline", "both"]
    assert all(row["videos"] == 2 and "temporal_consistency" in row for row in result["ablation"])
    # Every row carries its word gap; the row that is the main model reuses the suite's own.
    assert all(isinstance(row["motion_word_gap"], float) for row in result["ablation"])
    assert result["ablation"][1]["motion_word_gap"] == result["motion_word_gap"]
    printed = capsys.readouterr().out
    assert "motion_factor_spearman" in printed and "(8 videos" in printed and "ablation" in printed
    if "--plots" in argv:
        assert (tmp_path / "plots" / "motion_vs_gamma_m.png").is_file()
        assert (tmp_path / "plots" / "appearance_vs_gamma_a.png").is_file()


def test_plots_without_matplotlib_fail_before_the_run(tiny_model, monkeypatch, capsys):
    # A run takes minutes: a missing plotting library must be said at once, not after the measurements.
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    monkeypatch.setattr(evaluate, "load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit):
        evaluate.main(["--suite", "shapes", "--model", str(tiny_model[0]), "--plots", "plots"])
    assert "--plots needs matplotlib: pip install matplotlib" in capsys.readouterr().err


def test_shapes_suite_measures_the_fast_presets(tiny_model, tmp_path, capsys):
    # The presets' effect on quality is measured with the same suite: DPM-Solver++ and feature caching.
    out = tmp_path / "preset.json"
    assert evaluate.main(["--suite", "shapes", "--model", str(tiny_model[0]), "--samples", "1", "--steps", "3",
                          "--device", "cpu", "--scheduler", "dpm", "--feature-cache-interval", "2",
                          "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["scheduler"] == "dpm" and result["feature_cache_interval"] == 2 and result["guidance_scale"] == 12.0
    assert "3 dpm steps, feature cache every 2 steps" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        evaluate.main(["--suite", "shapes", "--model", str(tiny_model[0]), "--feature-cache-interval", "0"])


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
    assert "clipsim" in capsys.readouterr().out


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
