"""The training configuration: defaults, file + flag precedence, --help, and errors that name the field."""

from dataclasses import fields
from pathlib import Path

import pytest

from higen_core.train import main
from higen_core.training.config import ConfigError, TrainConfig, build_parser, make_config, parse_args

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "higen_core" / "configs" / "train-tiny.yaml"
TINY_DATA = REPO / "assets" / "tiny-data"
DATA = ["--video-data", str(TINY_DATA), "--image-data", str(TINY_DATA)]


def test_defaults_are_the_papers_setting():
    config = TrainConfig()
    assert (config.learning_rate, config.weight_decay, config.max_train_steps) == (5e-5, 0.0, 25000)
    assert (config.num_frames, config.height, config.width) == (32, 256, 448)
    assert (config.image_fraction, config.text_dropout, config.offset_noise, config.spatial_grad_scale) == (
        0.25, 0.1, 0.1, 0.2)


def test_file_then_flags(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(f"learning_rate: 5e-4\nnum_frames: 8\nvideo_data: [{TINY_DATA}]\nimage_data: [{TINY_DATA}]\n")
    config, args = parse_args(["--config", str(path), "--num_frames", "4", "--use-ema", "--sample-prompts", "a", "b"])
    assert config.learning_rate == 5e-4  # YAML reads '5e-4' as a string: coerced to the field's type
    assert config.num_frames == 4 and config.use_ema is True and config.sample_prompts == ["a", "b"]
    assert not args.check_data
    # JSON files work the same way.
    (tmp_path / "run.json").write_text('{"max_train_steps": 7, "image_fraction": 0, "video_data": []}')
    with pytest.raises(ConfigError, match="^video_data"):
        parse_args(["--config", str(tmp_path / "run.json")])


def test_help_documents_every_field():
    text = build_parser().format_help()
    for f in fields(TrainConfig):
        assert f"--{f.name.replace('_', '-')}" in text
        assert f.metadata["help"].split()[0] in text
    assert "--check-data" in text and "--config" in text
    assert "--generate-shapes-dataset" not in text  # the trainer reads data; writing it is its own command


@pytest.mark.parametrize(
    "flags, field",
    [
        (["--learning-rate", "-1"], "learning_rate"),
        (["--learning-rate", "fast"], "learning_rate"),
        (["--checkpoints-total-limit", "1"], "checkpoints_total_limit"),
        (["--mixed-precision", "fp8"], "mixed_precision"),
        (["--height", "100"], "height"),
        (["--image-fraction", "1.5"], "image_fraction"),
        (["--high-noise-fraction", "-0.1"], "high_noise_fraction"),
        (["--high-noise-start", "1000"], "high_noise_start"),
        (["--use-ema", "perhaps"], "use_ema"),
        (["--video-data", "/no/such/manifest.jsonl", "--image-fraction", "0"], "video_data"),
        (["--sample-motion-factor", "-1"], "sample_motion_factor"),
        (["--resume", "/no/such/checkpoint"], "resume"),
    ],
)
def test_invalid_field_fails_naming_it(flags, field):
    with pytest.raises(ConfigError) as error:
        parse_args(DATA + flags)
    assert error.value.field == field and str(error.value).startswith(f"{field}:")


def test_unknown_field_in_a_file_suggests_the_closest(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        make_config({"learnin_rate": 1e-4})
    # The trainer writes no dataset: `python -m higen_core.shapes` does, and video_data/image_data name it.
    with pytest.raises(ConfigError, match="^generate_shapes_dataset: unknown field"):
        make_config({"generate_shapes_dataset": {"videos": 24, "images": 24}})


def test_main_reports_a_bad_field_and_exits_2(capsys):
    assert main(DATA + ["--max-train-steps", "0"]) == 2
    assert "max_train_steps: must be at least 1" in capsys.readouterr().err


def test_tiny_config_is_valid_from_the_repository_root(monkeypatch):
    monkeypatch.chdir(REPO)  # its data path is relative to the working directory, as the other configs' are
    config, _ = parse_args(["--config", "higen_core/configs/train-tiny.yaml"])
    assert config.init_from == config.vae == config.text_encoder == config.appearance_model == "tiny"
    assert (config.num_frames, config.height, config.width) == (8, 16, 16)
    assert config.video_data == config.image_data == ["assets/tiny-data"]


def test_sample_motion_factor_defaults_to_the_models_settings():
    assert TrainConfig().sample_motion_factor is None  # the samples then use the model's recommended γm
    config, _ = parse_args(DATA + ["--sample-motion-factor", "12.5"])
    assert config.sample_motion_factor == 12.5
    config, _ = parse_args(DATA + ["--sample-motion-factor", "12.5", "--sample-motion-factor", "null"])
    assert config.sample_motion_factor is None
