# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""Evaluation of HiGen models: `python -m higen_core.evaluate`, the paper's prompt protocol and the shapes suite.

    python -m higen_core.evaluate --suite prompts --model DIR --prompts FILE --clip-model ID
        [--reference-videos DIR --fid-model ID --video-feature-model ID] [--json FILE]
    accelerate launch -m higen_core.evaluate --suite prompts ...     # GPUs: the prompts are split across processes
    torchrun --nproc_per_node 2 -m higen_core.evaluate --suite prompts ... --device cpu     # CPU processes
    python -m higen_core.evaluate --suite shapes [--model DIR] ...   # the shapes world: higen_core.shapes.evaluate

Both suites load their models with `higen_core.load_pipeline` (in float32, as every figure so far was measured).
--steps, --guidance-scale, --motion-factor and --appearance-factor default to the model's recommended settings
(`pipe.settings`); the values used are printed and written into the JSON. --cpu-threads N sets torch's CPU threads
before loading (default: torch's own, which torchrun sets to one per process).

**Prompts suite** (the paper's MSR-VTT protocol): one video per prompt. CLIPSIM: mean cosine of the prompt's CLIP text
embedding and each frame's image embedding; temporal consistency: mean CLIP image-embedding cosine of consecutive
frames; FID: Fréchet distance of per-frame features (--fid-model, up to 16 frames per video), FVD: of per-video
features (--video-feature-model, e.g. VideoMAE: its last hidden states averaged, on its frame count sampled
uniformly), against --reference-videos. Both live in those models' feature spaces: compare runs only with the same
feature models.

**Shapes suite**: the shapes world, whose answers are known; `higen_core.shapes.evaluate` documents its figures. It is
imported only when `--suite shapes` asks for it: importing this module leaves the shapes world out.

Undefined figures print as nan and are null in the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import scipy.linalg
import torch

from .loading import PipelineLoadError, load_pipeline, resolve_device, set_cpu_threads
from .pipeline_higen import HiGenPipeline, dpm_scheduler

FID_FRAMES = 16
VIDEO_EXTENSIONS = {".mp4", ".webm", ".mov", ".avi", ".mkv", ".gif"}


class EvaluationError(ValueError):
    """A bad argument or an unloadable model; the message names the flag."""


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of Gaussians fitted to two (N, D) feature sets: |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a
    S_b)^1/2)."""
    if len(a) < 2 or len(b) < 2:
        raise EvaluationError(f"a Fréchet distance needs at least 2 feature vectors per side; got {len(a)} and "
                              f"{len(b)}.")
    if min(len(a), len(b)) <= a.shape[1]:
        log(f"note: a Fréchet distance from {len(a)} and {len(b)} vectors of {a.shape[1]} features: the covariances "
            f"are singular and the figure is unreliable; use more videos than features.")
    a, b = a.astype(np.float64), b.astype(np.float64)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():  # singular products: said above
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # sqrtm failed on the singular product: regularise, as FID implementations do
        offset = np.eye(len(cov_a)) * 1e-6
        root = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a + cov_b - 2 * root.real))


def nan_mean(values) -> float:
    """The mean of `values`, skipping NaNs; NaN when there are none."""
    values = [float(v) for v in values]
    return float(np.nanmean(values)) if values and not all(map(math.isnan, values)) else math.nan


def log(message: str) -> None:
    """Progress, on stderr: stdout carries the figures."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Models and run parameters


def load_for_evaluation(source: str, device: str | torch.device | None, scheduler: str = "ddim",
                        flag: str = "--model") -> HiGenPipeline:
    """The pipeline at `source` (a folder, a hub id or "tiny") through `higen_core.load_pipeline`, in float32 on
    `device`, with the DPM-Solver++ preset if `scheduler` is "dpm"; an `EvaluationError` naming `flag` if it cannot
    be evaluated."""
    try:
        # float32 on every device: half precision would move the figures away from those measured so far.
        pipe = load_pipeline(source, device=device, dtype=torch.float32)
    except PipelineLoadError as error:
        raise EvaluationError(f"{flag}: {error}") from error
    if pipe.vae is None or pipe.tokenizer is None or pipe.text_encoder is None:
        raise EvaluationError(f"{flag} {source!r} needs a vae, a tokenizer and a text encoder to evaluate.")
    if scheduler == "dpm":
        pipe.scheduler = dpm_scheduler()
    return pipe


def run_parameters(pipe: HiGenPipeline, steps: int | None = None, guidance_scale: float | None = None,
                   motion_factor: float | None = None, appearance_factor: float | None = None) -> dict:
    """The steps, guidance and factors a run uses: each value given, else the model's recommended setting."""
    settings = pipe.settings
    return {"steps": settings.num_inference_steps if steps is None else steps,
            "guidance_scale": settings.guidance_scale if guidance_scale is None else guidance_scale,
            "motion_factor": settings.motion_factor if motion_factor is None else motion_factor,
            "appearance_factor": settings.appearance_factor if appearance_factor is None else appearance_factor}


# ---------------------------------------------------------------------------------------------------------------
# Prompts suite


def load_model(flag: str, value: str | None, loader: Callable, purpose: str):
    """`loader(value)`, with an error naming the flag when the value is missing or does not load."""
    if not value:
        raise EvaluationError(f"{flag} is required {purpose}.")
    try:
        return loader(value)
    except Exception as error:  # from_pretrained raises OSError, ValueError, KeyError, ... for a bad folder or id
        raise EvaluationError(f"{flag} {value!r} could not be loaded ({type(error).__name__}: {error}).") from error


def read_video(path: Path) -> np.ndarray:
    """(F, H, W, 3) uint8 frames of a video file."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def uniform_frames(video: np.ndarray, count: int) -> np.ndarray:
    """`count` frames spread evenly over the clip (repeating frames of shorter clips)."""
    return video[np.linspace(0, len(video) - 1, count).round().astype(int)]


def _to_uint8(video: np.ndarray) -> list[np.ndarray]:
    video = np.asarray(video)
    return list(video if video.dtype == np.uint8 else (np.clip(video, 0, 1) * 255).round().astype(np.uint8))


def _pooled(output) -> torch.Tensor:
    """A features tensor from a transformers output: the projected/pooled output, else the first token."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    return (pooled if pooled is not None else output.last_hidden_state[:, 0]).flatten(1)


class FeatureModels:
    """The prompts suite's frozen feature models, each from a folder or hub id."""

    def __init__(self, clip: str | None, fid: str | None, video: str | None, device: torch.device,
                 with_reference: bool):
        from transformers import AutoImageProcessor, AutoModel, CLIPModel, CLIPProcessor

        self.device = device
        purpose = "for the prompts suite (CLIPSIM, temporal consistency)"
        # from_pretrained returns models in eval mode.
        self.clip = load_model("--clip-model", clip, CLIPModel.from_pretrained, purpose).to(device)
        self.clip_processor = load_model("--clip-model", clip, CLIPProcessor.from_pretrained, purpose)
        self.fid = self.video = None
        if with_reference:
            purpose = "with --reference-videos (FID)"
            self.fid = load_model("--fid-model", fid, AutoModel.from_pretrained, purpose).to(device)
            self.fid_processor = load_model("--fid-model", fid, AutoImageProcessor.from_pretrained, purpose)
            purpose = "with --reference-videos (FVD)"
            self.video = load_model("--video-feature-model", video, AutoModel.from_pretrained, purpose).to(device)
            self.video_processor = load_model("--video-feature-model", video, AutoImageProcessor.from_pretrained,
                                              purpose)

    @torch.no_grad()
    def clip_scores(self, video: np.ndarray, prompt: str) -> dict:
        """CLIPSIM and consecutive-frame consistency of one video."""
        text = self.clip_processor(text=[prompt], padding="max_length", truncation=True, return_tensors="pt")
        text = _pooled(self.clip.get_text_features(**{k: v.to(self.device) for k, v in text.items()}))
        pixels = self.clip_processor(images=_to_uint8(video), return_tensors="pt").pixel_values.to(self.device)
        frames = torch.nn.functional.normalize(_pooled(self.clip.get_image_features(pixel_values=pixels)), dim=-1)
        text = torch.nn.functional.normalize(text, dim=-1)
        return {"clipsim": float((frames @ text[0]).mean()),
                "temporal_consistency": float((frames[1:] * frames[:-1]).sum(-1).mean())}

    @torch.no_grad()
    def frame_features(self, video: np.ndarray) -> np.ndarray:
        """(min(F, FID_FRAMES), D) image features of frames spread over the clip."""
        frames = _to_uint8(uniform_frames(video, min(len(video), FID_FRAMES)))
        pixels = self.fid_processor(images=frames, return_tensors="pt").pixel_values.to(self.device)
        forward = getattr(self.fid, "get_image_features", self.fid)  # a CLIP-like model: its image tower
        return _pooled(forward(pixel_values=pixels)).float().cpu().numpy()

    @torch.no_grad()
    def video_features(self, video: np.ndarray) -> np.ndarray:
        """(D,) one feature vector per clip: the video model's last hidden states averaged over its tokens."""
        count = getattr(self.video.config, "num_frames", 16)
        frames = _to_uint8(uniform_frames(video, count))
        # VideoMAE's processor reads a list of frames as one video: (1, T, 3, h, w).
        pixels = self.video_processor(frames, return_tensors="pt").pixel_values
        pixels = pixels if pixels.ndim == 5 else pixels[None]
        output = self.video(pixel_values=pixels.to(self.device))
        return output.last_hidden_state.float().mean(1)[0].cpu().numpy()


def _reference_files(folder: str) -> list[Path]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
    if len(files) < 2:
        raise EvaluationError(f"--reference-videos {folder!r} holds {len(files)} videos "
                              f"({', '.join(sorted(VIDEO_EXTENSIONS))}); FID and FVD need at least 2.")
    return files


def run_prompts(args: argparse.Namespace) -> dict | None:
    """Generate one video per prompt and measure it; under `accelerate launch` every process takes a share of the
    prompts (and of the reference videos) and the main process gathers and reports. Returns None on other
    processes."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    # Without GPUs, processes started by torchrun only form a group when accelerate is told they run on CPUs.
    state = PartialState(cpu=args.device == "cpu" or not torch.cuda.is_available())
    # Several processes: each takes the device accelerate gives it.
    device = torch.device(args.device) if args.device and state.num_processes == 1 else state.device
    prompts_file = Path(args.prompts or "")
    if not args.prompts or not prompts_file.is_file():
        raise EvaluationError(f"--prompts must name a file of prompts, one per line; got {args.prompts!r}.")
    prompts = [line.strip() for line in prompts_file.read_text().splitlines() if line.strip()]
    if not prompts:
        raise EvaluationError(f"--prompts {args.prompts!r} holds no prompts.")
    references = _reference_files(args.reference_videos) if args.reference_videos else []
    features = FeatureModels(args.clip_model, args.fid_model, args.video_feature_model, device, bool(references))
    pipe = load_for_evaluation(args.model, device, args.scheduler)
    parameters = run_parameters(pipe, args.steps, args.guidance_scale, args.motion_factor, args.appearance_factor)

    mine = []
    with state.split_between_processes(list(enumerate(prompts))) as share:
        for index, prompt in share:
            # Seeded per prompt, not per process: the videos do not depend on the number of processes.
            generator = torch.Generator(pipe._execution_device).manual_seed(args.seed + index)
            video = pipe(prompt, motion_factor=parameters["motion_factor"],
                         appearance_factor=parameters["appearance_factor"],
                         num_inference_steps=parameters["steps"], guidance_scale=parameters["guidance_scale"],
                         generator=generator, output_type="np",
                         feature_cache_interval=args.feature_cache_interval).frames[0]
            record = {"index": index, "prompt": prompt, **features.clip_scores(video, prompt)}
            if references:
                record["frame_features"] = features.frame_features(video)
                record["video_features"] = features.video_features(video)
            mine.append(record)
            log(f"[prompts] process {state.process_index}: video {index + 1}/{len(prompts)}")
    reference_features = []
    with state.split_between_processes(references) as share:
        for path in share:
            clip = read_video(path)
            reference_features.append({"frame_features": features.frame_features(clip),
                                       "video_features": features.video_features(clip)})
    records = sorted(gather_object(mine), key=lambda r: r["index"])
    reference_features = gather_object(reference_features)
    # The processes leave their group together and explicitly: one exiting while another still holds the group
    # can abort (SIGABRT) in the collective backend's teardown.
    state.wait_for_everyone()
    state.destroy_process_group()
    if not state.is_main_process:
        return None
    result = {"suite": "prompts", "model": args.model, "samples": len(records), **parameters, "seed": args.seed,
              "scheduler": args.scheduler, "feature_cache_interval": args.feature_cache_interval,
              "clipsim": nan_mean(r["clipsim"] for r in records),
              "temporal_consistency": nan_mean(r["temporal_consistency"] for r in records),
              "fid": math.nan, "fvd": math.nan, "reference_videos": len(reference_features),
              "per_prompt": [{k: r[k] for k in ("prompt", "clipsim", "temporal_consistency")} for r in records]}
    if references:
        result["fid"] = frechet_distance(np.concatenate([r["frame_features"] for r in records]),
                                         np.concatenate([r["frame_features"] for r in reference_features]))
        result["fvd"] = frechet_distance(np.stack([r["video_features"] for r in records]),
                                         np.stack([r["video_features"] for r in reference_features]))
    return result


def print_prompts(result: dict) -> None:
    n, refs = result["samples"], result["reference_videos"]
    print(f"prompts suite: {result['model']}, {n} prompts, {result['steps']} {result['scheduler']} steps, guidance "
          f"{result['guidance_scale']:g}, motion factor {result['motion_factor']:g}, appearance factor "
          f"{result['appearance_factor']:g}")
    print(f"  clipsim               {result['clipsim']:8.4f}   ({n} videos)")
    print(f"  temporal_consistency  {result['temporal_consistency']:8.4f}   ({n} videos)")
    if refs:
        print(f"  fid                   {result['fid']:8.3f}   ({n} videos vs {refs} reference videos)")
        print(f"  fvd                   {result['fvd']:8.3f}   ({n} videos vs {refs} reference videos)")


# ---------------------------------------------------------------------------------------------------------------
# Command line


def _json_ready(value):
    """NaN -> None (strict JSON), numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    value = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(value, float) and math.isnan(value) else value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m higen_core.evaluate", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=("shapes", "prompts"), required=True)
    parser.add_argument("--model", help="HiGen pipeline folder or hub id (required for prompts; shapes: default the "
                                        "bundled demo model, assets/shapes-model)")
    parser.add_argument("--samples", type=int, default=50, help="shapes: scenes to evaluate")
    parser.add_argument("--steps", type=int, default=None,
                        help="denoising steps of each stage (default: the model's settings)")
    parser.add_argument("--guidance-scale", type=float, default=None, help="default: the model's settings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--motion-factor", type=float, default=None,
                        help="γm of the prompts' videos; shapes: of the γa sweep's and the left/right videos, and of "
                             "the standard videos with --standard-motion fixed (default: the model's settings)")
    parser.add_argument("--standard-motion", choices=("clip", "fixed"), default="clip",
                        help="shapes: clip: each standard video at the γm of its scene's ground-truth clip (a still "
                             "scene at 0); fixed: at --motion-factor")
    parser.add_argument("--appearance-factor", type=float, default=None,
                        help="γa of the prompts' videos; shapes: of every video but the γa sweep's (default: the "
                             "model's settings)")
    parser.add_argument("--scheduler", choices=("ddim", "dpm"), default="ddim",
                        help="ddim: the official sampler; dpm: the fast preset (DPM-Solver++, fewer --steps)")
    parser.add_argument("--feature-cache-interval", type=int, default=1, metavar="N",
                        help="the feature-caching preset: the whole UNet every N steps (1: off, exact)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--cpu-threads", type=int, default=None, metavar="N",
                        help="threads of torch's CPU work (default: torch's own; on a busy machine fewer are faster)")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--plots", help="shapes: write motion_vs_gamma_m.png and appearance_vs_gamma_a.png here")
    parser.add_argument("--ablation", nargs="+", default=[], metavar="DIR",
                        help="shapes: model folders for the ablation table (e.g. baseline, structure-level, both)")
    parser.add_argument("--ablation-names", nargs="+", default=None, help="one name per --ablation folder")
    parser.add_argument("--prompts", help="prompts: text file, one prompt per line")
    parser.add_argument("--clip-model", help="prompts: CLIP folder or hub id (CLIPModel + CLIPProcessor)")
    parser.add_argument("--reference-videos", help="prompts: folder of real videos for FID/FVD")
    parser.add_argument("--fid-model", help="prompts: image model folder or hub id for FID features")
    parser.add_argument("--video-feature-model", help="prompts: video model folder or hub id (e.g. VideoMAE) for FVD")
    return parser


def evaluate(args: argparse.Namespace) -> dict | None:
    """Run the chosen suite; returns the JSON-ready result (None on non-main processes)."""
    if args.steps is not None and args.steps < 1:
        raise EvaluationError(f"--steps must be at least 1; got {args.steps}.")
    if args.feature_cache_interval < 1:
        raise EvaluationError(f"--feature-cache-interval must be at least 1; got {args.feature_cache_interval}.")
    if args.cpu_threads is not None:
        try:
            set_cpu_threads(args.cpu_threads)
        except PipelineLoadError as error:
            raise EvaluationError(f"--cpu-threads: {error}") from error
    if args.suite == "shapes":
        try:
            device = resolve_device(args.device)
        except PipelineLoadError as error:
            raise EvaluationError(f"--device: {error}") from error
        # Imported here, only when asked: importing this module must not import the shapes world.
        from .shapes.evaluate import run_suite

        return _json_ready(run_suite(args, device))
    if not args.model:
        raise EvaluationError("--suite prompts needs --model: the HiGen pipeline folder or hub id to evaluate.")
    result = run_prompts(args)
    if result is None:
        return None
    print_prompts(result)
    return _json_ready(result)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = evaluate(args)
    except EvaluationError as error:
        parser.error(str(error))
    if result is not None and args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, allow_nan=False))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
