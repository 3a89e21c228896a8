# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""Evaluation of HiGen models (issue 5): the shapes world, whose answers are known, and the paper's prompt protocol.

    python -m higen_core.evaluate --suite shapes --model DIR [--samples 50 --steps 25 --seed 0] [--json FILE]
        [--plots DIR] [--device cuda] [--ablation BASE STRUCT BOTH --ablation-names baseline structure both]
    python -m higen_core.evaluate --suite prompts --model DIR --prompts FILE --clip-model ID
        [--reference-videos DIR --fid-model ID --video-feature-model ID] [--json FILE]
    accelerate launch -m higen_core.evaluate --suite prompts ...     # GPUs: the prompts are split across processes
    torchrun --nproc_per_node 2 -m higen_core.evaluate --suite prompts ... --device cpu     # CPU processes

**Shapes suite.** Each sample is a scene of the shapes world (`shapes.sample_scene`, seeds apart from the dataset's).
Spatial reasoning makes a prior from its image caption; one batched `animate` call, every video from the same
starting noise, then makes: the caption at 4 motion factors spread over the model's `motion_factor_range`, the
caption at γa in {0, 0.4, 0.8, 1.0}, the same shapes "moving left" and "moving right", and the caption at its own
motion factor (the *standard* video: by default the γm of the scene's ground-truth clip, measured on its latents as the
trainer measures it, so that "stays still" is asked for at 0 and "moves left quickly" at a quick move's γm; the other
videos use one fixed γm, --motion-factor). Measured on the frames (values in [0, 1]):

* motion_factor_spearman: Spearman correlation, over all samples, of γm with the mean absolute difference of
  consecutive frames (the pixel counterpart of γm, a frame-difference magnitude; it needs no tracking and covers every
  motion: moves, growth, spins and colour changes).
* appearance_factor_spearman: Spearman correlation of γa with the appearance change, the distance between the mean
  RGB colours of the first and the last frame (a translation barely changes it; a colour change or growth does).
* motion_factor_spearman_within, appearance_factor_spearman_within: the same correlations taken within each sample
  (its videos share the prior and the starting noise, only the factor changes), averaged over the samples: whether
  the factor orders one scene's videos, free of the spread between scenes.
* direction_accuracy: share of the left/right videos whose tracked shape (the caption's first colour) travels the
  right way (sign of its least-squares x displacement); direction_colour_kept: share of their frames showing it.
* prior_fidelity: share of standard videos whose middle frame (the trainer's spatial prior is the middle frame) has
  the prior image's dominant shape colour, its centroid within 10% of the frame side of the prior's (a colour change
  starts after the middle frame, so it counts too).
* text_adherence: share of standard videos whose first frame's dominant shape colour is one of the caption's and whose
  `shapes.classify_motion` equals the caption's motion (all nine motions; colour changes via the target's track);
  text_colour_accuracy and text_motion_accuracy give the two parts.
* temporal_consistency: track continuity of the standard videos: the share of consecutive frame pairs in which the
  shapes (pixels not of the caption's background, at most half the frame) are found in both, their centroid moves at
  most 15% of the frame side and their area changes at most 2x. Flickering, vanishing or jumping shapes lower it.
* motion_word_gap: whether the model has learned its direction words, without sampling: moving world clips are noised
  to the noisiest timesteps (where only the conditions can say where the shape goes) and denoised once with their
  caption and once with the direction mirrored (left <-> right, up <-> down); the mean relative rise of the training
  loss. 0 means the words are ignored; motion_word_wins is the share of cases the true caption does better.
  size_word_gap / size_word_wins: the same for clips that grow or shrink, with the two words swapped.
* --ablation: temporal consistency and text adherence of each model's standard videos (Table 1 of the paper: without
  decoupling, structure-level only, both), and its motion_word_gap (whether the row learned the direction words that
  its text adherence depends on). Every model is sampled alike, prior then animation: a model trained
  without a prior or without the factors keeps those zero-initialised inputs at zero, so they do nothing.

**Prompts suite** (the paper's MSR-VTT protocol): one video per prompt at the default factors. CLIPSIM: mean cosine
of the prompt's CLIP text embedding and each frame's image embedding; temporal consistency: mean CLIP image-embedding
cosine of consecutive frames; FID: Fréchet distance of per-frame features (--fid-model, up to 16 frames per video),
FVD: of per-video features (--video-feature-model, e.g. VideoMAE: its last hidden states averaged, on its frame count
sampled uniformly), against --reference-videos. Both live in those models' feature spaces: compare runs only with the
same feature models.

Undefined figures (e.g. a Spearman correlation of constant measurements) print as nan and are null in the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import scipy.linalg
import scipy.stats
import torch

from .conditioning import appearance_matrix, motion_factors_from_latents
from .pipeline_higen import HiGenPipeline, default_scheduler, dpm_scheduler, text_states
from .shapes.measures import (
    appearance_change,
    centroid,
    dominant_colour,
    frame_difference,
    measured_motion,
    presence,
    spearman,
    track_continuity,
    x_displacement,
)
from .shapes.world import SHAPE_COLOURS, parse_caption, render_video, sample_scene
from .training.latents import higen_conditions

APPEARANCE_FACTORS = (0.0, 0.4, 0.8, 1.0)
NUM_MOTION_FACTORS = 4
# Seed stream of the evaluation scenes: np.random.SeedSequence([seed, 2]); the dataset uses 0 (videos), 1 (images).
EVAL_STREAM = 2
WORDS_STREAM = 3  # the motion-word clips' scenes
WORD_CLIPS = 48
SIZE_WORD_CLIPS = 24
# The noisiest timesteps of the zero-terminal-SNR schedule: the noisy input shows almost nothing, so the video's
# layout and its motion must come from the conditions; the prior gives the layout, only the text the direction.
WORD_TIMESTEPS = (960, 980, 999)
ABLATION_WORD_FIGURES = ("motion_word_gap", "motion_word_wins")  # what an ablation row keeps of motion_word_gap
MIRRORED = {"left": "right", "right": "left", "up": "down", "down": "up"}
SIZE_SWAPPED = {"grows": "shrinks", "shrinks": "grows", "grow": "shrink", "shrink": "grow"}
PRIOR_DISTANCE = 0.1  # fraction of the frame side
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
        _log(f"note: a Fréchet distance from {len(a)} and {len(b)} vectors of {a.shape[1]} features: the covariances "
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


# ---------------------------------------------------------------------------------------------------------------
# Shapes suite


def eval_scenes(seed: int, count: int) -> list:
    return [sample_scene(int(s)) for s in np.random.SeedSequence([seed, EVAL_STREAM]).generate_state(count)]


def direction_captions(scene) -> tuple[str, str]:
    """The scene's shapes "moving left" and "moving right" (at its speed, quickly if it has none)."""
    subject = " and ".join(f"a {o.colour} {o.shape}" for o in scene.objects)
    verb = "move" if len(scene.objects) > 1 else "moves"
    return tuple(f"{subject} {verb} {side} {scene.speed or 'quickly'} on a {scene.background} background"
                 for side in ("left", "right"))


def default_motion_factor(pipe: HiGenPipeline, value: float | None) -> float:
    low, high = pipe.unet.config.motion_factor_range
    return float(value) if value is not None else (low + high) / 2


def motion_factor_levels(pipe: HiGenPipeline) -> list[float]:
    """NUM_MOTION_FACTORS values from the bottom to the top of the trained range ({300, ..., 600} for the released
    model, as in the paper)."""
    low, high = pipe.unet.config.motion_factor_range
    return np.linspace(low, high, NUM_MOTION_FACTORS).tolist()


def generate_sample(pipe: HiGenPipeline, scene, requests: list[tuple[str, float, float]], steps: int,
                    guidance_scale: float, feature_cache_interval: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The prior image (H, W, 3) of the scene's image caption and one video per (caption, γm, γa) request, all from
    the same starting noise, in one batched call: (N, F, H, W, 3)."""
    # One generator per sample, from its scene seed: a sample's videos do not depend on --samples.
    generator = torch.Generator(pipe._execution_device).manual_seed(scene.seed)
    prior = pipe.generate_prior(scene.image_caption, num_inference_steps=steps, guidance_scale=guidance_scale,
                                generator=generator, output_type="np", feature_cache_interval=feature_cache_interval)
    shape = (1, pipe.unet.config.in_channels, pipe.unet.config.num_frames, *prior.latents.shape[2:])
    noise = pipe.prepare_latents(shape, generator, offset_noise=True, device=pipe._execution_device)
    prompts, motion, appearance = (list(column) for column in zip(*requests))
    video = pipe.animate(prior.latents, prompts, motion_factor=motion, appearance_factor=appearance,
                         latents=noise.expand(len(requests), -1, -1, -1, -1).contiguous(),
                         num_inference_steps=steps, guidance_scale=guidance_scale, generator=generator,
                         output_type="np", feature_cache_interval=feature_cache_interval)
    return prior.images[0], video.frames


def measure_standard(video: np.ndarray, prior_image: np.ndarray, caption: str) -> dict:
    """Text adherence, prior fidelity and temporal consistency of one standard video."""
    parsed = parse_caption(caption)
    first, middle = dominant_colour(video[0]), dominant_colour(video[len(video) // 2])
    prior_colour = dominant_colour(prior_image)
    prior_ok = prior_colour is not None and middle == prior_colour
    if prior_ok:
        a, b = centroid(prior_image, prior_colour), centroid(video[len(video) // 2], prior_colour)
        prior_ok = math.dist(a, b) <= PRIOR_DISTANCE * max(prior_image.shape[:2])
    motion = measured_motion(video, caption)
    colour_ok = first in parsed["colours"]
    return {"caption": caption, "motion": parsed["motion"], "measured_motion": motion, "first_colour": first,
            "prior_colour": prior_colour, "colour_ok": colour_ok, "motion_ok": motion == parsed["motion"],
            "adheres": colour_ok and motion == parsed["motion"], "prior_ok": prior_ok,
            "continuity": track_continuity(video, caption)}


def summarise_standard(records: list[dict]) -> dict:
    by_motion: dict[str, list[bool]] = {}
    for r in records:
        by_motion.setdefault(r["motion"], []).append(r["motion_ok"])
    return {"text_adherence": _mean(r["adheres"] for r in records),
            "text_colour_accuracy": _mean(r["colour_ok"] for r in records),
            "text_motion_accuracy": _mean(r["motion_ok"] for r in records),
            "text_motion_accuracy_by_motion": {k: _mean(v) for k, v in sorted(by_motion.items())},
            "text_motion_videos_by_motion": {k: len(v) for k, v in sorted(by_motion.items())},
            "temporal_consistency": _mean(r["continuity"] for r in records), "videos": len(records)}


def _mean(values) -> float:
    values = [float(v) for v in values]
    return float(np.nanmean(values)) if values and not all(map(math.isnan, values)) else math.nan


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def clip_latents(pipe: HiGenPipeline, scene) -> torch.Tensor:
    """The scene's ground-truth clip, rendered at the model's size and frame count and encoded: (1, C, F, h, w)."""
    device, unet, vae = pipe._execution_device, pipe.unet, pipe.vae
    sample_size = unet.config.sample_size
    size = (sample_size if isinstance(sample_size, int) else sample_size[0]) * pipe.vae_scale_factor
    pixels = torch.from_numpy(render_video(scene, unet.config.num_frames, size)).permute(0, 3, 1, 2)
    pixels = pixels.float().div(127.5).sub(1).to(device, vae.dtype)
    latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor  # (F, C, h, w)
    return latents.float().transpose(0, 1)[None]


@torch.no_grad()
def clip_motion_factor(pipe: HiGenPipeline, scene) -> float:
    """γm of the scene's ground-truth clip as the trainer measures it (mean over its frame pairs), within the model's
    trained `motion_factor_range`: the motion factor the caption's motion has in training, e.g. 0 for "stays still",
    a few units for growth, most for a quick move."""
    low, high = pipe.unet.config.motion_factor_range
    return min(max(float(motion_factors_from_latents(clip_latents(pipe, scene)).mean()), low), high)


def standard_motion_factor(pipe: HiGenPipeline, scene, standard_motion: str, fixed: float) -> float:
    if standard_motion == "clip":
        return clip_motion_factor(pipe, scene)
    if standard_motion == "fixed":
        return fixed
    raise EvaluationError(f"standard_motion must be 'clip' or 'fixed', not {standard_motion!r}.")


def run_shapes(pipe: HiGenPipeline, samples: int, steps: int, seed: int, guidance_scale: float,
               motion_factor: float | None = None, appearance_factor: float = 1.0,
               feature_cache_interval: int = 1, standard_motion: str = "clip") -> dict:
    """The shapes suite on one model: every figure, its counts and the per-sample measurements. `standard_motion`:
    "clip" samples each standard video at its scene's ground-truth γm (`clip_motion_factor`), "fixed" at
    `motion_factor` like the other videos."""
    levels, fixed_motion = motion_factor_levels(pipe), default_motion_factor(pipe, motion_factor)
    motion_pairs, appearance_pairs, directions, colour_kept, standard, per_sample = [], [], [], [], [], []
    start = time.time()
    for i, scene in enumerate(eval_scenes(seed, samples)):
        left, right = direction_captions(scene)
        standard_gm = standard_motion_factor(pipe, scene, standard_motion, fixed_motion)
        requests = ([(scene.caption, g, appearance_factor) for g in levels]
                    + [(scene.caption, fixed_motion, g) for g in APPEARANCE_FACTORS]
                    + [(left, fixed_motion, appearance_factor), (right, fixed_motion, appearance_factor),
                       (scene.caption, standard_gm, appearance_factor)])
        prior_image, videos = generate_sample(pipe, scene, requests, steps, guidance_scale, feature_cache_interval)
        n = len(levels)
        by_motion, by_appearance = videos[:n], videos[n:n + len(APPEARANCE_FACTORS)]
        moving_left, moving_right, standard_video = videos[-3:]
        motion = [frame_difference(v) for v in by_motion]
        appearance = [appearance_change(v) for v in by_appearance]
        motion_pairs += zip(levels, motion)
        appearance_pairs += zip(APPEARANCE_FACTORS, appearance)
        rgb = SHAPE_COLOURS[scene.colour]
        dx = [x_displacement(moving_left, rgb), x_displacement(moving_right, rgb)]
        directions += [dx[0] < 0, dx[1] > 0]  # NaN (shape lost) compares False: counted wrong
        colour_kept += [presence(moving_left, rgb), presence(moving_right, rgb)]
        standard.append(measure_standard(standard_video, prior_image, scene.caption))
        per_sample.append({"seed": scene.seed, "caption": scene.caption, "frame_difference": motion,
                           "appearance_change": appearance, "x_displacement": dx,
                           "standard_motion_factor": standard_gm, **standard[-1]})
        _log(f"[shapes] sample {i + 1}/{samples} ({time.time() - start:.0f}s): {scene.caption}")
    return {
        "samples": samples,
        "motion_factors": levels, "appearance_factors": list(APPEARANCE_FACTORS),
        "standard_factors": {"motion_factor": fixed_motion, "appearance_factor": appearance_factor,
                             "standard_motion": standard_motion},
        "motion_factor_spearman": spearman(*zip(*motion_pairs)),
        "appearance_factor_spearman": spearman(*zip(*appearance_pairs)),
        "motion_factor_spearman_within": _mean(spearman(levels, s["frame_difference"]) for s in per_sample),
        "appearance_factor_spearman_within": _mean(spearman(APPEARANCE_FACTORS, s["appearance_change"])
                                                   for s in per_sample),
        "direction_accuracy": _mean(directions),
        "direction_colour_kept": _mean(colour_kept),
        "prior_fidelity": _mean(r["prior_ok"] for r in standard),
        **summarise_standard(standard),
        **motion_word_gap(pipe, seed, appearance_factor=appearance_factor),
        "motion_by_factor": _by_factor(motion_pairs), "appearance_by_factor": _by_factor(appearance_pairs),
        "counts": {"motion_videos": len(motion_pairs), "appearance_videos": len(appearance_pairs),
                   "direction_videos": len(directions), "standard_videos": len(standard),
                   "prior_videos": len(standard)},
        "per_sample": per_sample,
    }


def mirrored_caption(caption: str) -> str:
    """The caption with its direction of motion reversed ("moves left" -> "moves right", up <-> down)."""
    words = caption.split(" ")
    return " ".join(MIRRORED.get(w, w) if i and words[i - 1] in ("moves", "move") else w for i, w in enumerate(words))


def size_swapped_caption(caption: str) -> str:
    """The caption with growing and shrinking swapped ("grows" -> "shrinks", "grow" -> "shrink" and back)."""
    return " ".join(SIZE_SWAPPED.get(w, w) for w in caption.split(" "))


@torch.no_grad()
def motion_word_gap(pipe: HiGenPipeline, seed: int, clips: int = WORD_CLIPS, appearance_factor: float = 1.0,
                    size_clips: int = SIZE_WORD_CLIPS) -> dict:
    """Whether the model has learned its motion words, free of the sampling noise that direction_accuracy carries.
    World clips that move (left, right, up, down) are rendered and encoded, then noised at WORD_TIMESTEPS and
    denoised once with their caption and once with the mirrored caption, conditioned as in training (middle-frame
    prior, measured motion factors). motion_word_gap: mean of loss(mirrored) / loss(true) - 1 over clips and
    timesteps (0: the direction words are ignored); motion_word_wins: share where the true caption's loss is lower.
    size_word_gap / size_word_wins: the same for clips that grow or shrink, with those two words swapped."""
    # Four motions in nine are moves, two grow or shrink: twenty seeds a clip leave plenty to choose from.
    seeds = np.random.SeedSequence([seed, WORDS_STREAM]).generate_state(max(clips, size_clips) * 20)
    scenes = [sample_scene(int(s)) for s in seeds]
    moving = [s for s in scenes if s.motion.startswith("moves")][:clips]
    sizing = [s for s in scenes if s.motion in ("grows", "shrinks")][:size_clips]
    gaps, wins = _caption_gap(pipe, moving, mirrored_caption, appearance_factor)
    size_gaps, size_wins = _caption_gap(pipe, sizing, size_swapped_caption, appearance_factor)
    return {"motion_word_gap": _mean(gaps), "motion_word_wins": _mean(wins), "motion_word_clips": len(moving),
            "motion_word_timesteps": list(WORD_TIMESTEPS),
            "size_word_gap": _mean(size_gaps), "size_word_wins": _mean(size_wins), "size_word_clips": len(sizing)}


def _caption_gap(pipe: HiGenPipeline, scenes: list, swap: Callable[[str], str],
                 appearance_factor: float) -> tuple[list[float], list[bool]]:
    """Per clip and WORD_TIMESTEPS: loss(swapped caption) / loss(true caption) - 1, and whether the true one won."""
    device, unet = pipe._execution_device, pipe.unet
    scheduler = default_scheduler()  # the training objective's schedule, whatever sampler the pipeline uses
    frames, width = unet.config.num_frames, unet.config.appearance_width
    timesteps = torch.tensor(WORD_TIMESTEPS, device=device)
    rows = appearance_matrix(appearance_factor, frames, width).expand(len(timesteps), -1, -1)
    gaps, wins = [], []
    for scene in scenes:
        latents = clip_latents(pipe, scene).expand(len(timesteps), -1, -1, -1, -1)  # (T, C, F, h, w)
        generator = torch.Generator(device).manual_seed(scene.seed)
        noise = pipe.prepare_latents(latents.shape, generator, offset_noise=True, device=device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        target = scheduler.get_velocity(latents, noise, timesteps)
        conditions = higen_conditions(latents, rows, width)  # the trainer's own: middle-frame prior, measured γm
        losses = []
        for caption in (scene.caption, swap(scene.caption)):
            states = text_states(pipe.tokenizer, pipe.text_encoder, [caption]).to(device, unet.dtype)
            prediction = unet(noisy.to(unet.dtype), timesteps, states.expand(len(timesteps), -1, -1),
                              **{k: v.to(unet.dtype) for k, v in conditions.items()}).sample
            losses.append((prediction.float() - target).pow(2).mean(dim=(1, 2, 3, 4)))
        gaps += (losses[1] / losses[0] - 1).tolist()
        wins += (losses[0] < losses[1]).tolist()
    return gaps, wins


def _by_factor(pairs: list[tuple[float, float]]) -> dict[str, dict]:
    grouped: dict[float, list[float]] = {}
    for factor, value in pairs:
        grouped.setdefault(factor, []).append(value)
    return {f"{k:g}": {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)} for k, v in grouped.items()}


def run_standard(pipe: HiGenPipeline, samples: int, steps: int, seed: int, guidance_scale: float,
                 motion_factor: float | None, appearance_factor: float, feature_cache_interval: int = 1,
                 standard_motion: str = "clip") -> dict:
    """The ablation's measurements: the standard videos and the motion word gap."""
    records, fixed_motion = [], default_motion_factor(pipe, motion_factor)
    for scene in eval_scenes(seed, samples):
        standard_gm = standard_motion_factor(pipe, scene, standard_motion, fixed_motion)
        request = (scene.caption, standard_gm, appearance_factor)
        prior_image, videos = generate_sample(pipe, scene, [request], steps, guidance_scale, feature_cache_interval)
        records.append(measure_standard(videos[0], prior_image, scene.caption))
    gaps = motion_word_gap(pipe, seed, appearance_factor=appearance_factor)
    return {**summarise_standard(records), **{key: gaps[key] for key in ABLATION_WORD_FIGURES}}


def print_shapes(result: dict, model: str, steps: int) -> None:
    c, n = result["counts"], result["samples"]
    low, high = result["motion_factors"][0], result["motion_factors"][-1]
    s = result["standard_factors"]
    preset = f", feature cache every {result['feature_cache_interval']} steps" if result["feature_cache_interval"] > 1 \
        else ""
    standard = (f"its clip's motion factor (mean {_mean(r['standard_motion_factor'] for r in result['per_sample']):.1f})"
                if s["standard_motion"] == "clip" else f"motion factor {s['motion_factor']:g}")
    print(f"shapes suite: {model}, {n} samples, {steps} {result['scheduler']} steps{preset}, guidance "
          f"{result['guidance_scale']:g}; other videos at motion factor {s['motion_factor']:g}, each standard video "
          f"at {standard}; appearance factor {s['appearance_factor']:g}")
    factors = ", ".join(map(str, APPEARANCE_FACTORS))
    rows = [
        ("motion_factor_spearman",
         f"{c['motion_videos']} videos: {n} samples x {NUM_MOTION_FACTORS} motion factors {low:g}-{high:g}"),
        ("appearance_factor_spearman",
         f"{c['appearance_videos']} videos: {n} samples x appearance factors {factors}"),
        ("motion_factor_spearman_within", f"within each sample, mean of {n}"),
        ("appearance_factor_spearman_within", f"within each sample, mean of {n}"),
        ("direction_accuracy", (f"{c['direction_videos']} videos: {n} priors x left/right; colour found in "
                                f"{result['direction_colour_kept']:.3f} of their frames")),
        ("prior_fidelity", f"{c['prior_videos']} standard videos"),
        ("text_adherence", (f"{c['standard_videos']} videos: colour {result['text_colour_accuracy']:.3f}, "
                            f"motion {result['text_motion_accuracy']:.3f}")),
        ("temporal_consistency", f"{c['standard_videos']} videos (track continuity)"),
        ("motion_word_gap", (f"{result['motion_word_clips']} moving clips x timesteps {result['motion_word_timesteps']}"
                             f": loss with mirrored direction / true - 1; true lower in "
                             f"{result['motion_word_wins']:.3f}")),
        ("size_word_gap", (f"{result['size_word_clips']} growing or shrinking clips, the same timesteps: loss with "
                           f"grows <-> shrinks / true - 1; true lower in {result['size_word_wins']:.3f}")),
    ]
    for key, note in rows:
        print(f"  {key:<33} {result[key]:7.3f}   ({note})")
    counts = result["text_motion_videos_by_motion"]
    by_motion = ", ".join(f"{k} {v:.2f} ({counts[k]})" for k, v in result["text_motion_accuracy_by_motion"].items())
    print(f"  motion accuracy by caption motion (videos): {by_motion}")


def print_ablation(rows: list[dict]) -> None:
    print("ablation (Table 1):")
    print(f"  {'model':<24} {'videos':>6} {'temporal consistency':>21} {'text adherence':>15} {'colour':>7} "
          f"{'motion':>7} {'motion word gap':>16}")
    for r in rows:
        print(f"  {r['name']:<24} {r['videos']:>6} {r['temporal_consistency']:>21.3f} {r['text_adherence']:>15.3f} "
              f"{r['text_colour_accuracy']:>7.3f} {r['text_motion_accuracy']:>7.3f} {r['motion_word_gap']:>16.3f}")


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise EvaluationError("--plots needs matplotlib: pip install matplotlib") from error
    return plt


def write_plots(result: dict, folder: str | Path) -> list[Path]:
    """motion_vs_gamma_m.png and appearance_vs_gamma_a.png: every video's measurement and the mean ± std."""
    plt = _pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    figures = [("motion_vs_gamma_m.png", "frame_difference", "motion_factors", "motion factor γm",
                "mean |frame difference| of consecutive frames", "motion_factor_spearman"),
               ("appearance_vs_gamma_a.png", "appearance_change", "appearance_factors", "appearance factor γa",
                "|mean colour of last frame - first frame|", "appearance_factor_spearman")]
    paths = []
    for name, key, factors_key, xlabel, ylabel, rho in figures:
        factors = np.array(result[factors_key])
        values = np.array([s[key] for s in result["per_sample"]])  # (samples, factors)
        spread = (factors[-1] - factors[0]) * 0.015
        fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
        for j, factor in enumerate(factors):
            ax.scatter(factor + np.linspace(-spread, spread, len(values)), values[:, j], s=8, alpha=0.35,
                       color="tab:blue")
        ax.errorbar(factors, values.mean(0), yerr=values.std(0), color="tab:red", marker="o", capsize=3,
                    label="mean ± std")
        ax.set(xlabel=xlabel, ylabel=ylabel, xticks=factors,
               title=f"Spearman {result[rho]:.2f}, within a sample {result[rho + '_within']:.2f}\n"
                     f"({values.size} videos, {len(values)} samples)")
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / name)
        plt.close(fig)
        paths.append(folder / name)
    return paths


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
    pipe = load_pipeline(args.model, device, args.scheduler)
    motion_factor = default_motion_factor(pipe, args.motion_factor)

    mine = []
    with state.split_between_processes(list(enumerate(prompts))) as share:
        for index, prompt in share:
            # Seeded per prompt, not per process: the videos do not depend on the number of processes.
            generator = torch.Generator(pipe._execution_device).manual_seed(args.seed + index)
            video = pipe(prompt, motion_factor=motion_factor, appearance_factor=args.appearance_factor,
                         num_inference_steps=args.steps, guidance_scale=args.guidance_scale, generator=generator,
                         output_type="np", feature_cache_interval=args.feature_cache_interval).frames[0]
            record = {"index": index, "prompt": prompt, **features.clip_scores(video, prompt)}
            if references:
                record["frame_features"] = features.frame_features(video)
                record["video_features"] = features.video_features(video)
            mine.append(record)
            _log(f"[prompts] process {state.process_index}: video {index + 1}/{len(prompts)}")
    reference_features = []
    with state.split_between_processes(references) as share:
        for path in share:
            clip = read_video(path)
            reference_features.append({"frame_features": features.frame_features(clip),
                                       "video_features": features.video_features(clip)})
    records = sorted(gather_object(mine), key=lambda r: r["index"])
    reference_features = gather_object(reference_features)
    if not state.is_main_process:
        return None
    result = {"suite": "prompts", "model": args.model, "samples": len(records), "steps": args.steps,
              "seed": args.seed, "motion_factor": motion_factor, "appearance_factor": args.appearance_factor,
              "clipsim": _mean(r["clipsim"] for r in records),
              "temporal_consistency": _mean(r["temporal_consistency"] for r in records),
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
    print(f"prompts suite: {result['model']}, {n} prompts, {result['steps']} steps")
    print(f"  clipsim               {result['clipsim']:8.4f}   ({n} videos)")
    print(f"  temporal_consistency  {result['temporal_consistency']:8.4f}   ({n} videos)")
    if refs:
        print(f"  fid                   {result['fid']:8.3f}   ({n} videos vs {refs} reference videos)")
        print(f"  fvd                   {result['fvd']:8.3f}   ({n} videos vs {refs} reference videos)")


# ---------------------------------------------------------------------------------------------------------------


def load_pipeline(path: str, device: str | torch.device, scheduler: str = "ddim") -> HiGenPipeline:
    try:
        pipe = HiGenPipeline.from_pretrained(path)
    except Exception as error:  # a missing folder, a folder of something else
        raise EvaluationError(f"--model {path!r} is not a loadable HiGen pipeline ({type(error).__name__}: "
                              f"{error}).") from error
    if pipe.vae is None or pipe.tokenizer is None or pipe.text_encoder is None:
        raise EvaluationError(f"--model {path!r} needs a vae, a tokenizer and a text encoder to evaluate.")
    pipe.set_progress_bar_config(disable=True)
    if scheduler == "dpm":
        pipe.scheduler = dpm_scheduler()
    return pipe.to(device)


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
    parser.add_argument("--model", required=True, help="HiGen pipeline folder or hub id")
    parser.add_argument("--samples", type=int, default=50, help="shapes: scenes to evaluate")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps of each stage")
    parser.add_argument("--guidance-scale", type=float, default=12.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--motion-factor", type=float, default=None,
                        help="γm of the γa sweep's and the left/right videos, and of the standard videos with "
                             "--standard-motion fixed (default: the middle of the model's motion_factor_range)")
    parser.add_argument("--standard-motion", choices=("clip", "fixed"), default="clip",
                        help="clip: each standard video at the γm of its scene's ground-truth clip (a still scene "
                             "at 0); fixed: at --motion-factor")
    parser.add_argument("--appearance-factor", type=float, default=1.0,
                        help="γa of every video but the γa sweep's: the standard, γm-sweep and left/right videos")
    parser.add_argument("--scheduler", choices=("ddim", "dpm"), default="ddim",
                        help="ddim: the official sampler; dpm: the fast preset (DPM-Solver++, fewer --steps)")
    parser.add_argument("--feature-cache-interval", type=int, default=1, metavar="N",
                        help="the feature-caching preset: the whole UNet every N steps (1: off, exact)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
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
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.suite == "prompts":
        result = run_prompts(args)
        if result is not None:
            print_prompts(result)
        return None if result is None else _json_ready(result)

    if args.samples < 1 or args.steps < 1 or args.feature_cache_interval < 1:
        raise EvaluationError("--samples, --steps and --feature-cache-interval must be at least 1.")
    names = args.ablation_names or [Path(p).name for p in args.ablation]
    if len(names) != len(args.ablation):
        raise EvaluationError(f"--ablation-names gives {len(names)} names for {len(args.ablation)} --ablation "
                              f"folders.")
    if args.plots:
        _pyplot()  # before the run, not after it: a missing matplotlib must not cost the measurements
    pipe = load_pipeline(args.model, device, args.scheduler)
    common = {"steps": args.steps, "seed": args.seed, "guidance_scale": args.guidance_scale,
              "motion_factor": args.motion_factor, "appearance_factor": args.appearance_factor,
              "feature_cache_interval": args.feature_cache_interval, "standard_motion": args.standard_motion}
    result = run_shapes(pipe, args.samples, **common)
    result = {"suite": "shapes", "model": args.model, "steps": args.steps, "seed": args.seed,
              "guidance_scale": args.guidance_scale, "scheduler": args.scheduler,
              "feature_cache_interval": args.feature_cache_interval, **result}
    print_shapes(result, args.model, args.steps)
    if args.ablation:
        rows = []
        for name, path in zip(names, args.ablation):
            if Path(path).resolve() == Path(args.model).resolve():  # same model, same videos: measured already
                figures = {**summarise_standard(result["per_sample"]),
                           **{key: result[key] for key in ABLATION_WORD_FIGURES}}
            else:
                figures = run_standard(load_pipeline(path, device, args.scheduler), args.samples, **common)
            rows.append({"name": name, "model": path, **figures})
        result["ablation"] = rows
        print_ablation(rows)
    if args.plots:
        for path in write_plots(result, args.plots):
            print(f"wrote {path}")
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
