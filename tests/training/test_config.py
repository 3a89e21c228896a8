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
        # Numbers are finite; negative ones, also in scientific notation, are values for the range checks.
        (["--learning-rate", "inf"], "learning_rate"),
        (["--learning-rate", "-1e-4"], "learning_rate"),
        (["--adam-epsilon", "inf"], "adam_epsilon"),
        (["--adam-epsilon", "-1E-8"], "adam_epsilon"),
        (["--fps", "inf"], "fps"),
        (["--fps", "nan"], "fps"),
        (["--image-fraction", "nan"], "image_fraction"),
        (["--sample-motion-factor", "-inf"], "sample_motion_factor"),
        (["--seed", "-1"], "seed"),
        (["--motion-factor-measure", "l2"], "motion_factor_measure"),
        (["--seed", "1099511627776"], "seed"),
        (["--seed", "4294967296"], "seed"),
        # Model sources that are paths must exist (a hub id is looked up when it loads).
        (["--init-from", "/nonexistent"], "init_from"),
        (["--init-from", "nonexistent.json"], "init_from"),
        (["--vae", "/nonexistent"], "vae"),
        (["--text-encoder", "./nonexistent"], "text_encoder"),
        (["--tokenizer", "~/nonexistent"], "tokenizer"),
        (["--appearance-model", "/nonexistent"], "appearance_model"),
        (["--appearance-model", "tests/nonexistent"], "appearance_model"),  # an existing parent folder
        (["--appearance-model", "not a hub id"], "appearance_model"),
        (["--num-frames", "1"], "num_frames"),
        (["--frozen-dtype", "float64"], "frozen_dtype"),
        (["--lora-alpha", "0"], "lora_alpha"),
        (["--appearance-model", "facebook--x/dinov2"], "appearance_model"),  # no hub id holds "--" or ".."
        (["--appearance-model", "facebook../dinov2"], "appearance_model"),
        # Flags: exact names only, and each takes its value.
        (["--learning-rat", "1e-4"], "--learning-rat"),
        (["--learning-rate"], "learning_rate"),
        (["--seed", "1.5"], "seed"),
    ],
)
def test_invalid_field_fails_naming_it(flags, field):
    with pytest.raises(ConfigError) as error:
        parse_args(DATA + flags)
    assert error.value.field == field and str(error.value).startswith(f"{field}:")


def test_numbers_in_range_are_read_whatever_their_notation():
    config, _ = parse_args(DATA + ["--sample-motion-factor", "-0", "--learning-rate", "1E-3", "--seed", "4294967295",
                                   "--adam-epsilon=1e-10", "--weight-decay", ".5e-2"])
    assert (config.sample_motion_factor, config.learning_rate, config.seed) == (0.0, 1e-3, 2**32 - 1)
    assert (config.adam_epsilon, config.weight_decay) == (1e-10, 5e-3)
    # A hub id with no such folder here is left for the loader; an existing folder is taken as one.
    config, _ = parse_args(DATA + ["--appearance-model", "facebook/dinov2-small", "--vae", str(TINY_DATA)])
    assert config.appearance_model == "facebook/dinov2-small"


def test_messages_name_the_problem():
    def message(flags):
        with pytest.raises(ConfigError) as error:
            parse_args(flags)
        return str(error.value)

    assert message(DATA + ["--learning-rate", "inf"]) == "learning_rate: must be a finite number; got inf."
    assert message(DATA + ["--learning-rate", "-1e-4"]) == "learning_rate: must be positive; got -0.0001."
    assert message(DATA + ["--learning-rat", "1e-4"]) == "--learning-rat: unknown flag; did you mean --learning-rate?"
    assert message(DATA + ["--init-from", "/nonexistent"]) == "init_from: no such folder: /nonexistent."
    assert message(DATA + ["--init-from", "unet.json"]) == "init_from: no such file: unet.json."
    assert message(DATA + ["--fps", "0"]) == "fps: must be positive; got 0.0."
    assert message(DATA + ["--sample-every", "5", "--sample-prompts"]) == (
        "sample_prompts: give at least one prompt when sample_every > 0; got [].")
    assert message(DATA + ["--checkpoints-total-limit", "1"]) == (
        "checkpoints_total_limit: must be at least 2, so that a complete checkpoint exists while the next one is "
        "written; got 1.")
    assert message(DATA + ["--lr-scheduler", "cosine_annealing"]).startswith("lr_scheduler: must be one of ")
    assert message(DATA + ["--sample-motion-factor", "fast"]) == (
        "sample_motion_factor: expected a number or null; got 'fast'.")
    assert message(DATA + ["--check-dat"]) == "--check-dat: unknown flag; did you mean --check-data?"
    assert message(["--image-data", str(TINY_DATA)]) == (
        "video_data: no videos: give video_data or video_shards (or image_fraction: 1); got [].")
    # No sample videos, no prompts needed.
    assert parse_args(DATA + ["--sample-every", "0", "--sample-prompts"])[0].sample_prompts == []
    assert message(DATA + ["--height", "12"]) == "height: must be a positive multiple of 8; got 12."
    # A missing manifest is reported for its own field, before the other kind's absence.
    assert message(["--video-data", "/nonexistent/videos.jsonl"]) == (
        "video_data: not found: /nonexistent/videos.jsonl.")


def test_config_file_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("num_frames: 8\nvideo_data: [a, b\nheight: 16\n")
    with pytest.raises(ConfigError, match=f"^config: {path}, line [34]: not valid YAML"):
        parse_args(["--config", str(path)])
    path.write_text('{"num_frames": 8,, }')
    with pytest.raises(ConfigError) as error:
        parse_args(["--config", str(path)])
    # The parser's own words for the problem, without its position dump.
    assert str(error.value) == f"config: {path}, line 1: not valid YAML (expected the node content, but found ',')."
    path.write_text("- num_frames: 8\n")
    with pytest.raises(ConfigError) as error:
        parse_args(["--config", str(path)])
    assert str(error.value) == f"config: {path} must hold a mapping of fields."


def test_unknown_field_in_a_file_suggests_the_closest(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        make_config({"learnin_rate": 1e-4})
    # The trainer writes no dataset: `python -m higen_core.shapes` does, and video_data/image_data name it.
    with pytest.raises(ConfigError, match="^generate_shapes_dataset: unknown field"):
        make_config({"generate_shapes_dataset": {"videos": 24, "images": 24}})


def test_main_reports_a_bad_field_and_exits_2(capsys):
    assert main(DATA + ["--max-train-steps", "0"]) == 2
    assert "max_train_steps: must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, error",
    [
        (["--learning-rate", "-1e-4"], "error: learning_rate: must be positive"),
        (["--learning-rat", "1e-4"], "error: --learning-rat: unknown flag; did you mean --learning-rate?"),
        (["--learning-rate"], "error: learning_rate: expected one argument"),
        (["--seed", "-1"], "error: seed: must be 0 to 2**32 - 1"),
        (["--init-from", "/nonexistent"], "error: init_from: no such folder: /nonexistent"),
        (["--config", "{yaml}"], "error: config: {yaml}, line 2: not valid YAML"),
        (["--video-data", "{bad_manifest}"], "error: video_data: {bad_manifest}, line 2: invalid JSON"),
        (["--image-data", "{keyless_manifest}"], 'error: image_data: {keyless_manifest}, line 1: "caption" is missing'),
        (["--image-data", "{empty_manifest}"], "error: image_data: The manifests"),
        (["--output-dir", "{file}/run"], "error: output_dir: cannot create or write {file}/run"),
    ],
)
def test_main_reports_every_bad_input_before_any_model_loads(tmp_path, monkeypatch, capsys, flags, error):
    # Each is refused in the process that would train, before the first model loads and without a traceback.
    import higen_core.train

    def no_models(config):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(higen_core.train, "load_components", no_models)
    names = {"yaml": tmp_path / "run.yaml", "bad_manifest": tmp_path / "bad.jsonl",
             "keyless_manifest": tmp_path / "keyless.jsonl", "empty_manifest": tmp_path / "empty.jsonl",
             "file": tmp_path / "file"}
    names["yaml"].write_text("num_frames: 8\n  height: 16\n")
    names["bad_manifest"].write_text('{"path": "a.mp4", "caption": "fine"}\nnot json\n')
    names["keyless_manifest"].write_text('{"path": "a.png", "text": "no caption key"}\n')
    names["empty_manifest"].write_text("\n")
    names["file"].write_text("a file, not a folder")
    flags = [flag.format(**names) for flag in flags]
    argv = ["--config", str(TINY), "--video-data", str(TINY_DATA), "--image-data", str(TINY_DATA),
            "--output-dir", str(tmp_path / "out"), "--progress-bar", "false"] + flags
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(error.format(**names)) and "Traceback" not in err, err


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
