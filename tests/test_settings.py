"""A model folder's recommended settings: recorded in model_index.json, checked on load, the pipeline's defaults."""

import json

import pytest
import torch

from higen_core import HiGenPipeline, HiGenSettings, SettingsError
from higen_core.settings import released_settings
from higen_core.testing import tiny_components

RECORDED = {"motion_factor": 30, "motion_factor_range": [10, 40], "appearance_factor": 0.25, "guidance_scale": 2.5,
            "num_inference_steps": 2, "fps": 12, "example_prompts": ["a red cube"],
            "motion_examples": [{"label": "rolls (γm 20)", "motion_prompts": ["a red cube rolls"], "motion_factor": 20}],
            "vocabulary": ["a", "red", "cube", "rolls"]}


def test_settings_survive_save_and_load_and_become_the_calls_defaults(tmp_path):
    HiGenPipeline(**tiny_components(), settings=RECORDED).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["settings"] == RECORDED
    pipe = HiGenPipeline.from_pretrained(tmp_path)
    assert pipe.settings.to_dict() == {**RECORDED, "motion_factor_range": [10.0, 40.0]}
    calls = []
    pipe._denoise = lambda latents, *args: calls.append(args) or latents  # the loop's inputs, not its work
    pipe.animate(torch.zeros(1, 4, 8, 8), "a red cube", num_frames=3, output_type="latent")
    prompt_embeds, negative_prompt_embeds, conditions, steps, guidance = calls[0][:5]
    assert (steps, guidance) == (2, 2.5)
    assert conditions["motion_factors"].unique().tolist() == [30.0]
    assert conditions["appearance_matrix"][0, 0, 2].item() == pytest.approx(0.75)  # 1 - γa at the far frame
    pipe.generate_prior("a red cube", output_type="latent")
    assert calls[1][3:5] == (2, 2.5)


def test_without_settings_a_model_gets_the_papers_values_within_its_trained_range():
    pipe = HiGenPipeline(**tiny_components())  # trained range 0-100: 500 is outside, so its middle
    assert (pipe.settings.motion_factor, pipe.settings.motion_factor_range) == (50.0, (0.0, 100.0))
    assert (pipe.settings.appearance_factor, pipe.settings.guidance_scale, pipe.settings.num_inference_steps) == (
        1.0, 12.0, 50)
    assert pipe.settings.example_prompts == () and pipe.settings.vocabulary is None
    released = released_settings()
    assert (released.motion_factor, released.motion_factor_range, released.guidance_scale) == (500, (300, 600), 12)


@pytest.mark.parametrize("bad, key", [
    ({"motion_factor": 50}, "settings.motion_factor 50 is outside"),
    ({"guidance_scale": float("nan")}, "settings.guidance_scale"),
    ({"num_inference_steps": 0}, "settings.num_inference_steps"),
    ({"appearance_factor": 2}, "settings.appearance_factor"),
    ({"motion_examples": [{"label": "x", "motion_prompts": []}]}, "settings.motion_examples[0]"),
    ({"guidance": 3}, "unknown keys ['guidance']"),
])
def test_bad_settings_fail_to_load_naming_the_key(tmp_path, bad, key):
    HiGenPipeline(**tiny_components()).save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    index["settings"] = {"motion_factor": 30, "motion_factor_range": [10, 40], **bad}
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(SettingsError, match=key.replace("[", r"\[").replace("]", r"\]")):
        HiGenPipeline.from_pretrained(tmp_path)


def test_unknown_words_are_named_once_in_order():
    settings = HiGenSettings.resolve(RECORDED, (0, 100))
    assert settings.unknown_words("A red corgi, a cube on the beach, a corgi") == ["corgi", "on", "the", "beach"]
    assert HiGenSettings.resolve({}, (0, 100)).unknown_words("anything at all") == []
