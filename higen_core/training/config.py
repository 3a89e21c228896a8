# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""The training run's configuration: one dataclass, read from a YAML/JSON file and `--field value` flags.

    python -m higen_core.train --config higen_core/configs/train-tiny.yaml --max-train-steps 50 --use-ema

Precedence: the dataclass defaults (the paper's setting, Section 4.1), then the file, then the command line.
Every field is a flag (`--max-train-steps` or `--max_train_steps`, exactly: no abbreviations); `--help` lists them
all with their defaults. `validate()` checks everything before any model is loaded, so a typo fails in a second, with
a ConfigError naming the field (`python -m higen_core.train` prints it and exits with code 2).
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import re
import sys
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from ..conditioning import MOTION_FACTOR_MEASURES
from ..lora import DEFAULT_LORA_TARGETS

MIXED_PRECISIONS = ("no", "fp16", "bf16")
FROZEN_DTYPES = ("auto", "float32", "float16", "bfloat16")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")
TRACKERS = ("tensorboard", "none")


class ConfigError(ValueError):
    """A bad field; the message starts with the field's name."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.field, self.message = name, message


class TrainingError(RuntimeError):
    """A run that cannot go on (e.g. a diverged loss, or data without a usable sample)."""


def _field(default, help: str, group: str):
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, "group": group})
    return field(default=default, metadata={"help": help, "group": group})


@dataclass
class TrainConfig:
    # --- Models --------------------------------------------------------------------------------------------------
    init_from: str = _field(
        "tiny", "What the UNet starts from: a HiGen pipeline folder (fine-tuning), a diffusers UNet3DConditionModel "
        "(ModelScope T2V) or Stable Diffusion 2.x UNet2DConditionModel, as a pipeline folder/hub id or its unet "
        "folder, a HiGenUNet3DModel config .json (a new model, from scratch), or 'tiny' (seeded tiny test "
        "components).", "models")
    vae: str | None = _field(
        None, "Frozen AutoencoderKL: folder, hub id or 'tiny'. Default: the `vae` of init_from's pipeline.", "models")
    text_encoder: str | None = _field(
        None, "Frozen CLIP text encoder: folder, hub id or 'tiny'. Default: init_from's `text_encoder`.", "models")
    tokenizer: str | None = _field(
        None, "Its tokenizer: folder, hub id or 'tiny'. Default: next to the text encoder.", "models")
    appearance_model: str = _field(
        "facebook/dinov2-base", "Frozen self-supervised image model whose per-frame features (CLS/pooled output) "
        "give the appearance matrix (Eq. 3): any transformers image model folder or hub id, or 'tiny'.", "models")
    frozen_dtype: str = _field(
        "auto", f"dtype of the frozen models, one of {FROZEN_DTYPES}. 'auto': half precision (bfloat16 with bf16 "
        "mixed precision, else float16) on a GPU, float32 on a CPU.", "models")
    gradient_checkpointing: bool = _field(
        False, "Recompute the UNet's activations in the backward pass: less memory, ~30% more time.", "models")
    lora_rank: int = _field(
        0, "Train LoRA adapters of this rank instead of every weight (0: full training). The base weights stay as "
        "they are; DIR/lora gets the adapters in diffusers' LoRA format (pipe.load_lora_weights).", "models")
    lora_alpha: float | None = _field(None, "LoRA alpha (the adapters' scale is alpha / rank); null: the rank.",
                                      "models")
    lora_target_modules: list[str] = _field(
        DEFAULT_LORA_TARGETS, "Modules (names or ends of names) that get adapters. Default: every attention "
        "projection (spatial, temporal, the text resampler's) and the motion and appearance MLPs.", "models")

    # --- Data ----------------------------------------------------------------------------------------------------
    video_data: list[str] = _field(
        [], "Video manifests (.jsonl of {path, caption}) or folders holding videos.jsonl. Relative paths, here and "
        "in the other path fields, are relative to the working directory.", "data")
    image_data: list[str] = _field(
        [], "Image manifests (.jsonl of {path, caption}) or folders holding images.jsonl.", "data")
    video_shards: list[str] = _field([], "Tar shards of videos (read in order, split across processes).", "data")
    image_shards: list[str] = _field([], "Tar shards of images.", "data")
    num_frames: int = _field(32, "Frames per training clip.", "data")
    fps: float = _field(8.0, "Frame rate clips are sampled at.", "data")
    height: int = _field(256, "Frame height in pixels (a multiple of 8).", "data")
    width: int = _field(448, "Frame width in pixels (a multiple of 8).", "data")
    batch_size: int = _field(1, "Videos per process and micro-batch.", "data")
    image_batch_size: int = _field(
        8, "Images per process and micro-batch (an image is one frame, so a batch of several costs about what "
        "one video does).", "data")
    image_fraction: float = _field(
        0.25, "Share of image batches (spatial reasoning) in joint training. Several processes: the first "
        "round(processes * fraction) take images. One process: steps interleave in that proportion.", "data")
    dataloader_num_workers: int = _field(2, "Data-loading worker processes per training process.", "data")
    cache_latents: bool = _field(
        False, "Encode every sample's VAE latents and appearance matrix once into cache_dir (one safetensors file "
        "each) and train from them. Each video then always gives the same clip.", "data")
    cache_dir: str | None = _field(None, "Latent cache folder. Default: OUTPUT_DIR/latent_cache.", "data")

    # --- Objective -----------------------------------------------------------------------------------------------
    text_dropout: float = _field(
        0.1, "Probability that a caption is replaced by '' (trains the unconditional branch that classifier-free "
        "guidance needs).", "objective")
    offset_noise: float = _field(
        0.1, "Strength of the offset noise added per sample, channel and frame (the official value; the pipeline "
        "starts sampling from the same).", "objective")
    structure_decoupling: bool = _field(
        True, "HiGen's structure-level decoupling: video steps take the middle frame as spatial prior and image steps "
        "train only the spatial layers. false (the paper's ablation baseline): no prior (the prior stem stays at "
        "zero) and image steps train every layer.", "objective")
    content_decoupling: bool = _field(
        True, "HiGen's content-level decoupling: video steps are guided by the measured motion factors and appearance "
        "matrix. false (the ablation): the motion and appearance MLPs stay at zero, so the factors have no effect.",
        "objective")
    motion_factor_measure: str | None = _field(
        None, f"How a clip's motion factors are measured, one of {MOTION_FACTOR_MEASURES}: the latents ('scaled': "
        "as the UNet denoises them; 'unscaled': the VAE's own) and the norm of each frame difference ('l2': the "
        "paper's ||z_f - z_f+1||; 'squared_l2'; 'l1': the sum of absolute values). null: the measure init_from's "
        "UNet records (its motion_factor_measure; a converted released model: 'scaled:l1', inferred, see "
        "higen_core/training/README.md). The trained model records the measure, so its γm keeps one meaning.",
        "objective")
    uniform_motion_factors: float = _field(
        0.0, "Share of video clips whose motion factors are all set to their mean over the clip's frame pairs. "
        "Inference gives one γm for every pair, so a model trained only on per-pair factors (0, the paper) can "
        "read from them when a change happens and ignore the caption's timing; 1 shows it what inference shows.",
        "objective")
    high_noise_fraction: float = _field(
        0.0, "Share of samples whose timestep is drawn from the noisiest ones (high_noise_start to the last) instead "
        "of uniformly. There the noisy input shows almost nothing, so only the caption and the other conditions say "
        "where things go: in the shapes world 0.5 taught the motion words in 2500 steps to a run that had not learned "
        "them in 5000 (README, 'Motion words'). 0: uniform, as the paper.", "objective")
    high_noise_start: int = _field(
        850, "First timestep (of 1000) of the noisiest range that high_noise_fraction draws from.", "objective")
    spatial_grad_scale: float = _field(
        0.2, "Factor on the gradients of the spatial parameters (the text-to-image model's layers), as the paper "
        "trains. Under AdamW a constant factor is divided out again (each step is normalised by the gradient's "
        "running RMS), so values above 0 change little besides gradient clipping; 0 freezes those layers.",
        "objective")

    # --- Optimisation --------------------------------------------------------------------------------------------
    max_train_steps: int = _field(25000, "Optimizer steps to train for.", "optimisation")
    learning_rate: float = _field(5e-5, "AdamW learning rate (after warm-up).", "optimisation")
    lr_scheduler: str = _field("constant_with_warmup", f"Learning-rate schedule, one of {LR_SCHEDULERS}.",
                               "optimisation")
    lr_warmup_steps: int = _field(500, "Warm-up length, in optimizer steps.", "optimisation")
    weight_decay: float = _field(0.0, "AdamW weight decay.", "optimisation")
    adam_beta1: float = _field(0.9, "AdamW beta1.", "optimisation")
    adam_beta2: float = _field(0.999, "AdamW beta2.", "optimisation")
    adam_epsilon: float = _field(1e-8, "AdamW epsilon.", "optimisation")
    max_grad_norm: float = _field(1.0, "Clip the gradients' global norm to this (0: no clipping).", "optimisation")
    gradient_accumulation_steps: int = _field(1, "Micro-batches per optimizer step.", "optimisation")
    mixed_precision: str | None = _field(
        None, f"One of {MIXED_PRECISIONS}; null: what `accelerate launch`/`accelerate config` says (else 'no'). "
        "Trainable weights stay float32 under autocast.", "optimisation")
    allow_tf32: bool = _field(True, "Let float32 matrix products use TF32 on Ampere and newer GPUs (faster; "
                              "ignored elsewhere).", "optimisation")
    use_ema: bool = _field(False, "Keep an exponential moving average of the UNet; DIR/final gets its weights.",
                           "optimisation")
    ema_decay: float = _field(0.9999, "EMA decay.", "optimisation")
    max_consecutive_nonfinite: int = _field(
        10, "Non-finite losses skip their step; this many in a row stop the run with an error.", "optimisation")
    cpu_threads: int = _field(
        0, "Threads of torch's CPU operations when training on a CPU (0: torch's default, one per core).",
        "optimisation")
    seed: int = _field(0, "Seed of everything random (each process gets its own stream from it), 0 to 2**32 - 1.",
                       "optimisation")

    # --- Output --------------------------------------------------------------------------------------------------
    output_dir: str = _field(
        "outputs/higen-train", "Run folder: checkpoints/, logs/, samples/, final/. It holds one run at a time (its "
        "run.lock names the run using it); a second run into it is refused.", "output")
    checkpointing_steps: int = _field(
        1000, "Save a checkpoint every this many steps (0: only at the end and when stopped).", "output")
    checkpoints_total_limit: int = _field(3, "Complete checkpoints kept (at least 2).", "output")
    resume: str | None = _field(
        None, "'latest' (the newest complete checkpoint in OUTPUT_DIR, if any) or a checkpoint folder.", "output")
    report_to: str = _field(
        "tensorboard", f"Tracker besides the JSONL log, one of {TRACKERS}; TensorBoard only if it is installed.",
        "output")
    sample_every: int = _field(0, "Write sample videos every this many steps (0: never).", "output")
    sample_prompts: list[str] = _field(["a red circle moves right"], "Prompts of the sample videos.", "output")
    sample_inference_steps: int = _field(25, "Denoising steps of the sample videos.", "output")
    sample_guidance_scale: float = _field(9.0, "Guidance scale of the sample videos.", "output")
    sample_motion_factor: float | None = _field(
        None, "Motion factor of the sample videos; null: the one the model recommends (its pipeline's `settings`, "
        "else the paper's 500 when its trained motion_factor_range holds it, else the middle of that range).",
        "output")
    progress_bar: bool = _field(True, "Show a tqdm progress bar (off: no progress bars, and one line per step).",
                                "output")

    # ------------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first bad field. Returns self."""

        def check(name: str, ok: bool, message: str, show_value: bool = True):
            if not ok:
                raise ConfigError(name, f"{message}; got {getattr(self, name)!r}." if show_value else f"{message}.")

        # inf and nan pass every comparison below or fail them silently (nan > 0 is False, inf > 0 is True).
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float):
                check(f.name, math.isfinite(value), "must be a finite number")
        check("init_from", bool(self.init_from), "give a folder, a hub id or 'tiny'")
        for name in ("init_from", "vae", "text_encoder", "tokenizer", "appearance_model"):
            source = getattr(self, name)
            if source not in (None, "tiny") and _is_local_path(source):
                # The loaders take a path as it is written: a '~' is the shell's to expand, not theirs.
                hint = " ('~' is not expanded here: give the full path)" if source.startswith("~") else ""
                kind = "file" if source.endswith(".json") else "folder"
                check(name, os.path.exists(source), f"no such {kind}: {source}{hint}", show_value=False)
        check("frozen_dtype", self.frozen_dtype in FROZEN_DTYPES, f"must be one of {FROZEN_DTYPES}")
        check("lora_rank", self.lora_rank >= 0, "must be 0 (full training) or a rank, 1 or more")
        check("lora_alpha", self.lora_alpha is None or self.lora_alpha > 0, "must be positive, or null")
        check("lora_target_modules", self.lora_rank == 0 or len(self.lora_target_modules) > 0,
              "name at least one module for the adapters")
        check("use_ema", not (self.use_ema and self.lora_rank), "EMA is for full training: turn it off with "
              "lora_rank > 0")
        check("motion_factor_measure", self.motion_factor_measure in (None, *MOTION_FACTOR_MEASURES),
              f"must be one of {MOTION_FACTOR_MEASURES}, or null (init_from's)")
        check("num_frames", self.num_frames >= 2, "must be at least 2 (one frame is an image: use image_data)")
        check("fps", self.fps > 0, "must be positive")
        for name in ("height", "width"):
            check(name, self.__dict__[name] > 0 and self.__dict__[name] % 8 == 0, "must be a positive multiple of 8")
        for name in ("batch_size", "image_batch_size", "max_train_steps", "gradient_accumulation_steps",
                     "max_consecutive_nonfinite", "sample_inference_steps"):
            check(name, self.__dict__[name] >= 1, "must be at least 1")
        for name in ("dataloader_num_workers", "lr_warmup_steps", "checkpointing_steps", "sample_every",
                     "cpu_threads", "weight_decay", "adam_epsilon", "max_grad_norm", "offset_noise",
                     "spatial_grad_scale", "sample_guidance_scale"):
            check(name, self.__dict__[name] >= 0, "must be 0 or more")
        check("sample_motion_factor", self.sample_motion_factor is None or self.sample_motion_factor >= 0,
              "must be 0 or more, or null")
        for name in ("image_fraction", "text_dropout", "uniform_motion_factors", "high_noise_fraction"):
            check(name, 0.0 <= self.__dict__[name] <= 1.0, "must be in [0, 1]")
        for name in ("adam_beta1", "adam_beta2", "ema_decay"):
            check(name, 0.0 <= self.__dict__[name] < 1.0, "must be in [0, 1)")
        check("high_noise_start", 0 <= self.high_noise_start < 1000, "must be a timestep, 0 to 999")
        check("seed", 0 <= self.seed < 2**32, "must be 0 to 2**32 - 1 (what numpy and accelerate seed with)")
        check("learning_rate", self.learning_rate > 0, "must be positive")
        check("lr_scheduler", self.lr_scheduler in LR_SCHEDULERS, f"must be one of {LR_SCHEDULERS}")
        check("mixed_precision", self.mixed_precision in (None, *MIXED_PRECISIONS),
              f"must be one of {MIXED_PRECISIONS} or null")
        check("checkpoints_total_limit", self.checkpoints_total_limit >= 2,
              "must be at least 2, so that a complete checkpoint exists while the next one is written")
        check("report_to", self.report_to in TRACKERS, f"must be one of {TRACKERS}")
        check("sample_prompts", self.sample_every == 0 or len(self.sample_prompts) > 0,
              "give at least one prompt when sample_every > 0")
        # A path that is not there says more than "no videos" for the kind it was meant for.
        for name in ("video_data", "image_data", "video_shards", "image_shards"):
            missing = [p for p in self.__dict__[name] if not os.path.exists(p)]
            check(name, not missing, f"not found: {', '.join(missing)}", show_value=False)
        check("video_data", bool(self.video_data or self.video_shards) or self.image_fraction == 1.0,
              "no videos: give video_data or video_shards (or image_fraction: 1)")
        check("image_data", bool(self.image_data or self.image_shards) or self.image_fraction == 0.0,
              "no images for image_fraction > 0: give image_data or image_shards (or image_fraction: 0)")
        for kind in ("video", "image"):
            check(f"{kind}_shards", not (self.__dict__[f"{kind}_data"] and self.__dict__[f"{kind}_shards"]),
                  f"give {kind}_data or {kind}_shards, not both")
        if self.resume not in (None, "latest"):
            check("resume", os.path.isdir(self.resume), "must be 'latest' or an existing checkpoint folder")
        return self


# A Hugging Face Hub model id: owner/name, each part letters, digits, '-', '_' and '.'.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def _is_local_path(source: str) -> bool:
    """Whether a model source names a folder on this machine rather than a hub id: it starts like a path, its parent
    folder exists here, or it is no hub id at all. A path that is not there then fails at once, instead of being
    looked up on the Hub (and failing there later, or worse, finding a model of that name)."""
    if source.startswith(("/", ".", "~")) or not _HUB_ID.match(source) or "--" in source or ".." in source:
        return True
    return os.path.isdir(os.path.dirname(source))


# --------------------------------------------------------------------------------------------------------------
# Reading: file values and flag strings are coerced to the field's type, with an error naming the field.
_HINTS = typing.get_type_hints(TrainConfig)
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def _coerce(name: str, value):
    hint = _HINTS[name]
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint) or hint
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
                return value.lower() in _TRUE
        elif hint is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, str):
                return int(value)
        elif hint is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):
                return float(value)  # also '5e-5', which YAML 1.1 reads as a string
        elif hint is str:
            if isinstance(value, str):
                return value
        elif origin is list:
            values = [value] if isinstance(value, str) else value
            if isinstance(values, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in values):
                return [str(v) for v in values]
    except ValueError:
        pass
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
                list: "a list of strings"}[origin]
    raise ConfigError(name, f"expected {expected}{' or null' if optional else ''}; got {value!r}.")


def _flags(name: str) -> list[str]:
    """A field's flags: `--max-train-steps` and `--max_train_steps`."""
    return [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])


class _Parser(argparse.ArgumentParser):
    """Reports a bad command line as a ConfigError, like a bad field, instead of printing usage and exiting."""

    def error(self, message: str):
        raise ConfigError("arguments", message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m higen_core.train",
        # Exact flag names only: a prefix such as --learning-rat would otherwise silently set --learning-rate.
        allow_abbrev=False,
        exit_on_error=False,
        description="HiGen image-video joint training (spatial reasoning on images, temporal reasoning on videos). "
        "Fields come from the defaults, then --config, then these flags. Several GPUs: `accelerate launch "
        "--multi_gpu -m higen_core.train ...` (DDP; FSDP and DeepSpeed are refused); several CPU processes: "
        "`torchrun --nproc_per_node N -m higen_core.train ...`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON file of fields (the flags override it).")
    parser.add_argument("--check-data", "--check_data", action="store_true", dest="check_data",
                        help="Open every video and image of the data fields, print what would be skipped, and exit.")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(TrainConfig):
        group = groups.get(f.metadata["group"]) or groups.setdefault(
            f.metadata["group"], parser.add_argument_group(f.metadata["group"]))
        flags = _flags(f.name)
        default = f.default_factory() if callable(f.default_factory) else f.default
        help = f"{f.metadata['help']} (default: {default!r})".replace("%", "%%")  # argparse %-formats help
        kwargs = dict(dest=f.name, default=argparse.SUPPRESS, help=help)
        hint = _HINTS[f.name]
        if hint is bool:
            kwargs.update(nargs="?", const="true", metavar="BOOL")  # `--use-ema` or `--use-ema false`
        elif typing.get_origin(hint) is list:
            kwargs.update(nargs="*", metavar="ITEM")
        else:
            kwargs.update(metavar=f.name.upper())
        group.add_argument(*flags, **kwargs)
    return parser


def load_config_file(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config", f"file {str(path)!r} not found.")
    try:
        data = yaml.safe_load(path.read_bytes()) or {}  # JSON is YAML too; bytes: YAML reads UTF-8 and UTF-16
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError("config", f"{where}: not valid YAML ({problem}).") from None
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path} must hold a mapping of fields.")
    return data


def make_config(values: dict) -> TrainConfig:
    """A validated TrainConfig from {field: value}; unknown fields fail with the closest known name."""
    known = {f.name for f in fields(TrainConfig)}
    for name in values:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            raise ConfigError(name, "unknown field" + (f"; did you mean {close[0]!r}?" if close else "."))
    return TrainConfig(**{name: _coerce(name, value) for name, value in values.items()}).validate()


# A negative number, also in scientific notation or infinite: argparse reads "-1e-4" after a flag as another flag.
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


def _join_negative_values(argv: list[str]) -> list[str]:
    """`--flag -1e-4` -> `--flag=-1e-4` for the flags that take one value, so that the value is read as one."""
    one_value = {flag for f in fields(TrainConfig) if _HINTS[f.name] is not bool
                 and typing.get_origin(_HINTS[f.name]) is not list for flag in _flags(f.name)}
    joined, i = [], 0
    while i < len(argv):
        if argv[i] in one_value and i + 1 < len(argv) and _NEGATIVE_NUMBER.match(argv[i + 1]):
            joined.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            joined.append(argv[i])
            i += 1
    return joined


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """(config, namespace with the non-field flags: config, check_data). A bad flag or value raises ConfigError."""
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(_join_negative_values(sys.argv[1:] if argv is None else list(argv)))
    except argparse.ArgumentError as error:  # the flag's field, e.g. "--learning-rate/--learning_rate"
        name = (error.argument_name or "arguments").split("/")[0].lstrip("-").replace("-", "_")
        raise ConfigError(name, error.message) from None
    if unknown:
        flag = next((item for item in unknown if item.startswith("-")), unknown[0])
        name = flag.split("=")[0]
        if not name.startswith("-"):
            raise ConfigError("arguments", f"unexpected value {flag!r}; values follow their flag (--field value).")
        known = ["--config", "--check-data", "--help"] + [flag for f in fields(TrainConfig) for flag in _flags(f.name)]
        close = difflib.get_close_matches(name, known, n=1)
        raise ConfigError(name, "unknown flag" + (f"; did you mean {close[0]}?" if close else "; see --help."))
    values = load_config_file(args.config) if args.config else {}
    values.update({f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)})
    return make_config(values), args


def config_to_json(config: TrainConfig) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)
