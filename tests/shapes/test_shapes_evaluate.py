"""The shapes suite (higen_core.shapes.evaluate): every measurement gets the known answer on rendered ground-truth
clips, and `python -m higen_core.evaluate --suite shapes` runs end to end on tiny models, on the bundled demo model by
default and at the model's recommended settings unless told otherwise."""

import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from higen_core import evaluate
from higen_core.pipeline_higen import HiGenPipeline
from higen_core.shapes import evaluate as shapes_evaluate
from higen_core.shapes.world import render_video, sample_scene
from higen_core.testing import tiny_components, tiny_pipeline

REPO = Path(__file__).resolve().parents[2]
SCENES = [sample_scene(seed) for seed in range(120)]


def test_ground_truth_clips_adhere_to_their_captions():
    records = []
    for s in SCENES:
        clip = render_video(s, 8, 64)
        records.append(shapes_evaluate.measure_standard(clip, clip[len(clip) // 2], s.caption))
    summary = shapes_evaluate.summarise_standard(records)
    assert summary["text_adherence"] == 1.0 and summary["temporal_consistency"] == 1.0
    assert set(summary["text_motion_accuracy_by_motion"]) == {s.motion for s in SCENES}
    # Prior fidelity holds on ground truth for every motion (a colour change starts after the middle frame).
    assert all(r["prior_ok"] is True for r in records)
    assert "changes colour" in summary["text_motion_accuracy_by_motion"]


def test_mismatches_are_caught(one_shape_scene):
    left = render_video(one_shape_scene("moves left"), 8, 64)
    record = shapes_evaluate.measure_standard(left, left[4], one_shape_scene("moves right").caption)
    assert record["colour_ok"] and not record["motion_ok"] and not record["adheres"]
    record = shapes_evaluate.measure_standard(left, left[4], one_shape_scene("moves left", colour="blue").caption)
    assert not record["colour_ok"]
    # A prior somewhere else: the video does not follow it.
    elsewhere = render_video(one_shape_scene("stays still", None, x=0.8), 1, 64)[0]
    assert shapes_evaluate.measure_standard(left, elsewhere,
                                            one_shape_scene("moves left").caption)["prior_ok"] is False


def test_within_sample_correlations_are_free_of_the_spread_between_scenes(monkeypatch):
    # Each scene's videos get more motion as γm rises, but scenes differ far more than the factor's steps: the pooled
    # correlation is weak, the within-sample one is exact.
    scenes = {scene.seed: i for i, scene in enumerate(shapes_evaluate.eval_scenes(0, 3))}

    def fake_sample(pipe, scene, requests, steps, guidance_scale, feature_cache_interval=1):
        videos = []
        for caption, motion_factor, appearance_factor in requests:
            amplitude = 0.02 * motion_factor + 0.3 * scenes[scene.seed]
            video = np.full((8, 8, 8, 3), 0.1) + (np.arange(8) % 2)[:, None, None, None] * amplitude
            video[-1] += 0.1 * appearance_factor
            videos.append(video)
        return np.full((8, 8, 3), 0.1), np.stack(videos)

    monkeypatch.setattr(shapes_evaluate, "generate_sample", fake_sample)
    monkeypatch.setattr(shapes_evaluate, "motion_word_gap", lambda *args, **kwargs: {})
    pipe = SimpleNamespace(unet=SimpleNamespace(config=SimpleNamespace(motion_factor_range=(0, 3))))
    result = shapes_evaluate.run_shapes(pipe, samples=3, steps=1, seed=0, guidance_scale=1.0, motion_factor=1.5,
                                        appearance_factor=1.0, standard_motion="fixed")
    assert result["motion_factor_spearman_within"] == pytest.approx(1.0)
    assert result["appearance_factor_spearman_within"] == pytest.approx(1.0)
    assert result["motion_factor_spearman"] < 0.5


def test_appearance_figures_are_given_per_background_so_a_blind_spot_shows():
    # γa acts on the grey scenes only: pooled over every scene it still looks fine, per background it does not.
    per_sample = [{"background": background, "appearance_change": [0.1 * i + 0.3 * k for i in range(4)]
                   if background == "grey" else [0.2, 0.21, 0.2, 0.19]}
                  for k, background in enumerate(["grey", "grey", "cyan", "black", "black"])]
    figures = shapes_evaluate.appearance_by_background(per_sample)
    assert set(figures) == {"black", "cyan", "grey"}
    assert [figures[b]["samples"] for b in ("black", "cyan", "grey")] == [2, 1, 2]
    assert figures["grey"]["appearance_factor_spearman_within"] == pytest.approx(1.0)
    assert figures["cyan"]["appearance_factor_spearman_within"] < 0.5
    assert figures["black"]["appearance_factor_spearman"] < 0.5


def test_standard_videos_ask_for_the_motion_factor_of_their_scene_clip(monkeypatch):
    # A still scene's ground-truth clip has γm 0 and a moving one's more: the standard video asks for that, while the
    # sweep and the left/right videos keep the fixed γm.
    pipe = tiny_pipeline(0)
    scenes = shapes_evaluate.eval_scenes(0, 40)
    still = next(s for s in scenes if s.motion == "stays still")
    moving = next(s for s in scenes if s.motion.startswith("moves") and s.speed == "quickly")
    assert shapes_evaluate.clip_motion_factor(pipe, still) == 0.0
    assert shapes_evaluate.clip_motion_factor(pipe, moving) > 0.0
    asked = []

    def fake_sample(pipe, scene, requests, steps, guidance_scale, feature_cache_interval=1):
        asked.append((scene, requests))
        return np.zeros((8, 8, 3)), np.zeros((len(requests), 2, 8, 8, 3))

    monkeypatch.setattr(shapes_evaluate, "eval_scenes", lambda seed, count: [still, moving][:count])
    monkeypatch.setattr(shapes_evaluate, "generate_sample", fake_sample)
    monkeypatch.setattr(shapes_evaluate, "motion_word_gap",
                        lambda *args, **kwargs: {"motion_word_gap": 0.0, "motion_word_wins": 0.5})
    result = shapes_evaluate.run_shapes(pipe, samples=2, steps=1, seed=0, guidance_scale=1.0, motion_factor=5.0,
                                        appearance_factor=1.0)
    for scene, requests in asked:
        assert requests[-1][1] == shapes_evaluate.clip_motion_factor(pipe, scene)
        assert {gm for _, gm, _ in requests[4:-1]} == {5.0}  # the γa sweep and left/right
    assert [r["standard_motion_factor"] for r in result["per_sample"]][0] == 0.0
    asked.clear()
    shapes_evaluate.run_standard(pipe, 2, 1, 0, 1.0, motion_factor=5.0, appearance_factor=1.0,
                                 standard_motion="fixed")
    assert [requests[-1][1] for _, requests in asked] == [5.0, 5.0]


def test_mirrored_captions_reverse_only_the_direction():
    mirrored, swapped = shapes_evaluate.mirrored_caption, shapes_evaluate.size_swapped_caption
    assert mirrored("a red circle moves left quickly on a grey background") == (
        "a red circle moves right quickly on a grey background")
    two = "a white star and a blue square move up slowly on a cyan background"
    assert mirrored(two) == "a white star and a blue square move down slowly on a cyan background"
    assert mirrored(mirrored(two)) == two
    assert mirrored("a red circle grows quickly on a grey background").endswith("grows quickly on a grey background")
    assert swapped("a red circle grows quickly on a grey background") == (
        "a red circle shrinks quickly on a grey background")
    two = "a white star and a blue square shrink slowly on a black background"
    assert swapped(two) == "a white star and a blue square grow slowly on a black background"


def test_motion_word_gap_is_zero_for_a_model_that_ignores_its_text(monkeypatch):
    pipe = tiny_pipeline(0)
    real = shapes_evaluate.motion_word_gap(pipe, seed=0, clips=3, size_clips=2)
    assert real["motion_word_clips"] == 3 and math.isfinite(real["motion_word_gap"])
    assert real["motion_word_gap"] != 0.0  # the tiny model's output depends on its caption
    assert real["size_word_clips"] == 2 and real["size_word_gap"] != 0.0
    # Every caption encoded alike: the mirrored direction cannot change the loss.
    same = shapes_evaluate.text_states(pipe.tokenizer, pipe.text_encoder, ["a red circle"])
    monkeypatch.setattr(shapes_evaluate, "text_states", lambda tokenizer, encoder, captions: same)
    ignored = shapes_evaluate.motion_word_gap(pipe, seed=0, clips=3, size_clips=2)
    assert ignored["motion_word_gap"] == 0.0 and ignored["motion_word_wins"] == 0.0
    assert ignored["size_word_gap"] == 0.0 and ignored["size_word_wins"] == 0.0


def test_undefined_correlations_are_nan():
    assert math.isnan(shapes_evaluate.spearman([0, 1, 2], [1.0, 1.0, 1.0]))


# ---------------------------------------------------------------------------------------------------------------
# The command line


def test_the_default_model_is_the_bundled_demo_model(monkeypatch, capsys):
    # `python -m higen_core.evaluate --suite shapes` evaluates assets/shapes-model of the checkout.
    assert shapes_evaluate.demo_model() == REPO / "assets" / "shapes-model"
    loaded = []

    def stop(source, *args, **kwargs):
        loaded.append(source)
        raise evaluate.EvaluationError("stopped after choosing the model")

    monkeypatch.setattr(shapes_evaluate, "load_for_evaluation", stop)
    with pytest.raises(SystemExit):
        evaluate.main(["--suite", "shapes", "--samples", "1"])
    assert loaded == [str(REPO / "assets" / "shapes-model")]
    # An installed package has no assets folder: the error says what to pass.
    monkeypatch.setattr(shapes_evaluate, "DEMO_MODEL", REPO / "no-such-folder")
    with pytest.raises(SystemExit):
        evaluate.main(["--suite", "shapes"])
    assert "pass --model DIR" in capsys.readouterr().err


def test_the_demo_model_runs_at_its_recommended_settings():
    folder = shapes_evaluate.demo_model()
    recorded = json.loads((folder / "model_index.json").read_text())["settings"]
    pipe = evaluate.load_for_evaluation(str(folder), "cpu")
    assert evaluate.run_parameters(pipe) == {
        "steps": recorded["num_inference_steps"], "guidance_scale": recorded["guidance_scale"],
        "motion_factor": recorded["motion_factor"], "appearance_factor": recorded["appearance_factor"]}


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
    monkeypatch.setattr(shapes_evaluate, "load_for_evaluation", lambda *a, **k: pytest.fail("the model was loaded"))
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
    # A model folder without settings runs at the paper's guidance.
    assert result["scheduler"] == "dpm" and result["feature_cache_interval"] == 2 and result["guidance_scale"] == 12.0
    assert "3 dpm steps, feature cache every 2 steps" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        evaluate.main(["--suite", "shapes", "--model", str(tiny_model[0]), "--feature-cache-interval", "0"])
    with pytest.raises(SystemExit):
        evaluate.main(["--suite", "shapes", "--model", str(tiny_model[0]), "--samples", "0"])
    assert "--samples must be at least 1" in capsys.readouterr().err


def test_unset_flags_come_from_the_model_settings(tmp_path, monkeypatch, capsys):
    settings = {"guidance_scale": 2.5, "num_inference_steps": 1, "motion_factor": 30, "appearance_factor": 0.6}
    folder = tmp_path / "with-settings"
    pipe = HiGenPipeline(**tiny_components(0), settings=settings)
    pipe.save_pretrained(folder)
    asked = []

    def word_gap(pipe, seed, appearance_factor):  # what the suite measures it with; the gap itself is tested above
        asked.append(appearance_factor)
        return {"motion_word_gap": 0.0, "motion_word_wins": 0.0, "motion_word_clips": 0, "motion_word_timesteps": [],
                "size_word_gap": 0.0, "size_word_wins": 0.0, "size_word_clips": 0}

    monkeypatch.setattr(shapes_evaluate, "motion_word_gap", word_gap)
    out = tmp_path / "shapes.json"
    assert evaluate.main(["--suite", "shapes", "--model", str(folder), "--samples", "1", "--standard-motion", "fixed",
                          "--device", "cpu", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["steps"], result["guidance_scale"]) == (1, 2.5)
    assert (result["motion_factor"], result["appearance_factor"]) == (30.0, 0.6)
    assert result["standard_factors"] == {"motion_factor": 30.0, "appearance_factor": 0.6, "standard_motion": "fixed"}
    assert result["per_sample"][0]["standard_motion_factor"] == 30.0 and asked == [0.6]
    assert "1 ddim steps, guidance 2.5; other videos at motion factor 30" in capsys.readouterr().out
    # A flag given wins over the setting.
    assert evaluate.main(["--suite", "shapes", "--model", str(folder), "--samples", "1", "--guidance-scale", "4",
                          "--appearance-factor", "1", "--device", "cpu", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["guidance_scale"], result["appearance_factor"], result["steps"]) == (4.0, 1.0, 1)
