# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""Text-to-video from the command line: one spatial prior, animated with every motion prompt in one batch.

    python -m higen_core.generate --model assets/shapes-model --prompt "a red circle on a cyan background" \
        --motion-prompt "a red circle moves left quickly on a cyan background" \
        --motion-prompt "a red circle moves right quickly on a cyan background" --motion-factor 17 --out circle.mp4

writes circle_prior.png, then circle_0.mp4 and circle_1.mp4, each with its settings beside it (circle_0.json, ...)
and embedded in the MP4, and prints their paths. With one motion prompt (by default the prompt itself) the video is
circle.mp4. Every video starts from --seed on its own, so running a motion prompt alone reproduces its batch member.
γm, γa, guidance, steps and frame rate default to what the model folder recommends (`pipe.settings`).

Mistakes in the command line, the model folder, the output path or the factors end the run with a one-line message
and exit code 2, before any file is written.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import torch

from . import video_io
from .loading import DTYPES, PipelineLoadError, apply_lora, check_source, load_pipeline, set_cpu_threads
from .pipeline_higen import dpm_scheduler

PROG = "python -m higen_core.generate"
VIDEO_EXTENSIONS = (".mp4", ".gif")


class UsageError(Exception):
    """A mistake the person running the command can fix: reported as one line, exit code 2."""


def _number(kind: type, low: float, high: float = math.inf):
    """An argparse type: `kind` (int or float) in [low, high], with a message that says which values are allowed."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}")
        if not low <= value <= high:  # also rejects NaN
            limit = f"from {low} to {high}" if high < math.inf else f">= {low}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: give a value {limit}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command line's arguments; malformed values are argparse errors (usage, message, exit code 2)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Generate videos with HiGen: one spatial prior, animated with each motion prompt.")
    parser.add_argument("--model", required=True, metavar="DIR_OR_HUB_ID",
                        help="a HiGen pipeline folder (HiGenPipeline.save_pretrained) or Hub ID")
    parser.add_argument("--prompt", required=True, metavar="TEXT", help="the prompt of the spatial prior")
    parser.add_argument("--motion-prompt", action="append", dest="motion_prompts", metavar="TEXT",
                        help="a motion prompt; repeat for several videos in one batch (default: the prompt)")
    parser.add_argument("--negative-prompt", default="", metavar="TEXT", help="what to steer away from (default: none)")
    # Factors are range-checked by the pipeline, whose messages name the allowed ranges. What is left out comes from
    # the model's recommended settings.
    parser.add_argument("--motion-factor", type=float, metavar="GAMMA_M",
                        help="γm, how much the frames differ (default: the model's; 500 for the released model)")
    parser.add_argument("--appearance-factor", type=float, metavar="GAMMA_A",
                        help="γa in [0, 1], how much appearance changes from first to last frame (default: the "
                             "model's)")
    parser.add_argument("--frames", type=_number(int, 2), help="frames per video (default: the model's)")
    parser.add_argument("--steps", type=_number(int, 1), help="denoising steps per stage (default: the model's)")
    parser.add_argument("--guidance", type=_number(float, 0),
                        help="classifier-free guidance scale (default: the model's)")
    parser.add_argument("--scheduler", choices=("ddim", "dpm"), default="ddim",
                        help="ddim: the official sampler (default); dpm: DPM-Solver++, a fast preset for 20-25 --steps "
                             "that changes the result")
    parser.add_argument("--feature-cache-interval", type=_number(int, 1), default=1, metavar="N",
                        help="fast preset that changes the result: the whole network every N steps, only its "
                             "outermost level in between (default 1: off)")
    parser.add_argument("--seed", type=_number(int, 0, 2**63 - 1), default=0, help="random seed (default 0)")
    parser.add_argument("--height", type=_number(int, 1), help="pixels (default: the model's)")
    parser.add_argument("--width", type=_number(int, 1), help="pixels (default: the model's)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available, else cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), help="weights' dtype (default: float16 on cuda, float32 on "
                                                               "cpu)")
    parser.add_argument("--cpu-offload", action="store_true",
                        help="keep each model on the CPU until it runs (less GPU memory, slower; needs cuda)")
    parser.add_argument("--cpu-threads", type=_number(int, 1), metavar="N",
                        help="threads of torch's CPU work (default: one per two cores; on a busy machine fewer "
                             "threads are faster)")
    parser.add_argument("--lora", metavar="DIR_OR_FILE",
                        help="a LoRA to apply: the DIR/lora folder of a LoRA training run, its .safetensors file, or "
                             "a hub id")
    parser.add_argument("--lora-scale", type=_number(float, 0, 10), default=1.0, metavar="S",
                        help="the LoRA's strength (default 1; 0 is the base model)")
    parser.add_argument("--fps", type=_number(float, 1e-3, 1000), help="frame rate (default: the model's)")
    parser.add_argument("--out", required=True, type=Path, metavar="PATH", help="output video: NAME.mp4 or NAME.gif")
    return parser


def output_paths(out: Path, count: int) -> tuple[Path, list[Path]]:
    """The prior's PNG and the `count` videos' paths for --out: NAME_prior.png and NAME.ext, or NAME_0.ext, ..."""
    prior = out.with_name(f"{out.stem}_prior.png")
    if count == 1:
        return prior, [out]
    return prior, [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(count)]


def check_output(out: Path) -> None:
    """Fail now, not after minutes of generation, if the videos cannot be written: a wrong extension, a folder that
    cannot be made or written to. A missing folder is created."""
    if out.suffix.lower() not in VIDEO_EXTENSIONS:
        raise UsageError(f"--out must end with {' or '.join(VIDEO_EXTENSIONS)}; got {str(out)!r}.")
    if out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a folder; give a file name such as {str(out / 'video.mp4')!r}.")
    folder = out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Writing a file is the only reliable test: permission bits say nothing for root or read-only mounts.
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UsageError(f"cannot write to the output folder {str(folder)!r}: {e.strerror or e}.")


def run(args: argparse.Namespace) -> list[str]:
    """Check, load, generate and write; returns the paths written. Raises `UsageError` for the person's mistakes."""
    motion_prompts = args.motion_prompts or [args.prompt]
    prior_path, video_paths = output_paths(args.out, len(motion_prompts))
    if args.cpu_offload and args.device == "cpu":
        raise UsageError("--cpu-offload moves models between the CPU and a GPU: it needs --device cuda.")
    try:
        if args.model != "tiny":
            check_source(args.model)  # a mistyped folder fails now, before the output folder is made
        check_output(args.out)
        set_cpu_threads(args.cpu_threads)
        pipe = load_pipeline(args.model, device=args.device, dtype=args.dtype,
                             offload="model" if args.cpu_offload else None, progress_bar=True)
        if args.lora:
            apply_lora(pipe, args.lora, args.lora_scale)
    except (PipelineLoadError, ValueError) as e:
        raise UsageError(str(e))
    if args.scheduler == "dpm":
        pipe.scheduler = dpm_scheduler()
    recommended = pipe.settings
    motion_factor = recommended.motion_factor if args.motion_factor is None else args.motion_factor
    appearance_factor = recommended.appearance_factor if args.appearance_factor is None else args.appearance_factor
    steps = recommended.num_inference_steps if args.steps is None else args.steps
    guidance = recommended.guidance_scale if args.guidance is None else args.guidance
    fps = recommended.fps if args.fps is None else args.fps
    presets = dict(feature_cache_interval=args.feature_cache_interval)
    try:
        pipe.check_factors([motion_factor], [appearance_factor])  # before spending time on the prior
        pipe.set_progress_bar_config(desc="Spatial prior")
        # A CPU generator gives the same noise on every device, so a seed means the same video on CPU and GPU.
        prior = pipe.generate_prior(
            args.prompt, args.negative_prompt, args.height, args.width, num_inference_steps=steps,
            guidance_scale=guidance, generator=torch.Generator().manual_seed(args.seed), output_type="pil",
            **presets)
        pipe.set_progress_bar_config(desc="Animating")
        # One generator per video, each seeded alike: video i's noise does not depend on the videos before it.
        video = pipe.animate(
            prior, motion_prompts, args.negative_prompt, motion_factor=motion_factor,
            appearance_factor=appearance_factor, num_frames=args.frames, num_inference_steps=steps,
            guidance_scale=guidance, generator=[torch.Generator().manual_seed(args.seed) for _ in motion_prompts],
            output_type="np", **presets)
    except ValueError as e:  # the pipeline's input checks: their message says what to change
        raise UsageError(str(e))

    written = [video_io.export_png(prior.images[0], prior_path)]
    for motion_prompt, frames, path in zip(motion_prompts, video.frames, video_paths):
        num_frames, height, width, _ = frames.shape
        settings = dict(
            model=args.model, prompt=args.prompt, motion_prompt=motion_prompt, negative_prompt=args.negative_prompt,
            seed=args.seed, motion_factor=motion_factor, appearance_factor=appearance_factor,
            num_frames=num_frames, num_inference_steps=steps, guidance_scale=guidance, height=height,
            width=width, fps=fps, scheduler=args.scheduler, feature_cache_interval=args.feature_cache_interval,
        )
        if args.lora:
            settings.update(lora=args.lora, lora_scale=args.lora_scale)
        if path.suffix.lower() == ".mp4":
            written.append(video_io.export_mp4(frames, path, fps=fps, metadata=settings))
        else:
            written.append(video_io.export_gif(frames, path, fps=fps))
        written.append(video_io.write_settings_json(settings, path.with_suffix(".json")))
    return written


def main(argv: list[str] | None = None) -> int:
    """The command line (`argv` without the program name; default: sys.argv). Returns the exit code: 0, or 2 after a
    one-line message on stderr (argparse's usage and message for malformed arguments)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed its message (or --help); pass its code on
        return exit_.code
    try:
        written = run(args)
    except UsageError as e:
        message = " ".join(str(e).split())  # one line, whatever the message held
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
