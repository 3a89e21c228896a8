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


def example(**change):
    return {"label": "rolls", "motion_prompts": ["a red cube rolls"], "motion_factor": 20, **change}


@pytest.mark.parametrize("recorded, message", [
    ({"motion_factor_range": [10]}, "settings.motion_factor_range must be [low, high]; got [10]."),
    ({"motion_factor_range": "0-100"}, "settings.motion_factor_range must be [low, high]; got '0-100'."),
    ({"motion_factor_range": [40, 10]}, "settings.motion_factor_range must have low < high; got [40, 10]."),
    ({"motion_factor_range": [10, 10]}, "settings.motion_factor_range must have low < high; got [10, 10]."),
    ({"motion_factor_range": [-1, 10]}, "settings.motion_factor_range must be a number from 0 to 10000; got -1."),
    ({"motion_factor_range": [0, 10001]}, "settings.motion_factor_range must be a number from 0 to 10000; got 10001."),
    ({"motion_factor": True}, "settings.motion_factor must be a number from 0 to 10000; got True."),
    ({"motion_factor": "30"}, "settings.motion_factor must be a number from 0 to 10000; got '30'."),
    ({"motion_factor": float("inf")}, "settings.motion_factor must be a number from 0 to 10000; got inf."),
    ({"motion_factor": 41}, "settings.motion_factor 41 is outside settings.motion_factor_range 10-40: record a value "
                            "inside it."),
    ({"motion_factor": 9.5}, "settings.motion_factor 9.5 is outside settings.motion_factor_range 10-40: record a "
                             "value inside it."),
    ({"num_inference_steps": True}, "settings.num_inference_steps must be a positive integer; got True."),
    ({"num_inference_steps": 2.0}, "settings.num_inference_steps must be a positive integer; got 2.0."),
    ({"num_inference_steps": 0}, "settings.num_inference_steps must be a positive integer; got 0."),
    ({"appearance_factor": -0.1}, "settings.appearance_factor must be a number from 0 to 1; got -0.1."),
    ({"appearance_factor": 1.5}, "settings.appearance_factor must be a number from 0 to 1; got 1.5."),
    ({"guidance_scale": 101}, "settings.guidance_scale must be a number from 0 to 100; got 101."),
    ({"fps": 0}, "settings.fps must be a number from 0.001 to 1000; got 0."),
    ({"fps": 1001}, "settings.fps must be a number from 0.001 to 1000; got 1001."),
    ({"example_prompts": "a cube"}, "settings.example_prompts must be a list; got str."),
    ({"example_prompts": ["a cube", "  "]}, "settings.example_prompts must be a list of non-empty strings."),
    ({"example_prompts": [3]}, "settings.example_prompts must be a list of non-empty strings."),
    ({"vocabulary": ["a", ""]}, "settings.vocabulary must be a list of non-empty strings."),
    ({"motion_examples": {"label": "x"}}, "settings.motion_examples must be a list; got dict."),
    ({"motion_examples": [["x"]]}, "settings.motion_examples[0] must be {label, motion_prompts, motion_factor}; "
                                   "got ['x']."),
    ({"motion_examples": [example(), example(fps=8)]},
     "settings.motion_examples[1] must be {label, motion_prompts, motion_factor}; got {'label': 'rolls', "
     "'motion_prompts': ['a red cube rolls'], 'motion_factor': 20, 'fps': 8}."),
    ({"motion_examples": [example(label=" ")]}, "settings.motion_examples[0].label must be a non-empty string."),
    ({"motion_examples": [example(label=3)]}, "settings.motion_examples[0].label must be a non-empty string."),
    ({"motion_examples": [example(motion_prompts=[])]},
     "settings.motion_examples[0].motion_prompts must hold at least one prompt."),
    ({"motion_examples": [example(motion_prompts="a red cube rolls")]},
     "settings.motion_examples[0].motion_prompts must be a list; got str."),
    ({"motion_examples": [example(motion_factor=41)]},
     "settings.motion_examples[0].motion_factor must be a number from 10 to 40; got 41."),
    ({"guidance": 3, "fsp": 8}, "settings: unknown keys ['fsp', 'guidance']; known keys are ['appearance_factor', "
                                "'example_prompts', 'fps', 'guidance_scale', 'motion_examples', 'motion_factor', "
                                "'motion_factor_range', 'num_inference_steps', 'vocabulary']."),
])
def test_each_bad_setting_gets_its_own_message(recorded, message):
    with pytest.raises(SettingsError) as error:
        HiGenSettings.resolve({"motion_factor": 30, "motion_factor_range": [10, 40], **recorded}, (0, 100))
    assert str(error.value) == message


def test_the_limits_themselves_are_allowed():
    edges = HiGenSettings.resolve({"motion_factor": 10, "motion_factor_range": [10, 40], "appearance_factor": 0,
                                   "guidance_scale": 100, "fps": 1e-3, "num_inference_steps": 1,
                                   "motion_examples": [example(motion_factor=40)]}, (0, 100))
    assert (edges.motion_factor, edges.appearance_factor, edges.guidance_scale, edges.fps) == (10, 0, 100, 1e-3)
    assert edges.motion_examples[0].motion_factor == 40 and edges.num_inference_steps == 1
    other = HiGenSettings.resolve({"motion_factor": 40, "motion_factor_range": [0, 10000], "appearance_factor": 1,
                                   "guidance_scale": 0, "fps": 1000}, (0, 100))
    assert (other.motion_factor, other.motion_factor_range, other.guidance_scale, other.fps) == (40, (0, 10000), 0,
                                                                                                 1000)
    # The paper's γm 500 whenever the range holds it, at either end too; else the range's middle.
    for trained, expected in (((300, 600), 500), ((500, 600), 500), ((300, 500), 500), ((501, 601), 551)):
        assert HiGenSettings.resolve(None, trained).motion_factor == expected
    settings = HiGenSettings.resolve({}, (0, 100))
    assert HiGenSettings.resolve(settings, (300, 600)) is settings  # already resolved: kept as it is
    assert "vocabulary" not in settings.to_dict()


def test_unknown_words_ignore_case_and_punctuation():
    settings = HiGenSettings.resolve({"vocabulary": ["a", "red", "cube"]}, (0, 100))
    assert settings.unknown_words('A RED cube. (a "red" cube!) cube, a: cube; red? \'a\'') == []
    assert settings.unknown_words("a red cube -- spins") == ["--", "spins"]
    assert settings.unknown_words("a Xylophone") == ["xylophone"]  # only punctuation is stripped
