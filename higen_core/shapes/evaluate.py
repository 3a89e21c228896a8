# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""The shapes suite of `python -m higen_core.evaluate`: HiGen measured on the shapes world, whose answers are known.

    python -m higen_core.evaluate --suite shapes [--model DIR] [--samples 50 --seed 0] [--json FILE] [--plots DIR]
        [--steps N --guidance-scale G --motion-factor M --appearance-factor A] [--device cuda] [--cpu-threads N]
        [--ablation BASE STRUCT BOTH --ablation-names baseline structure both]

Without --model it evaluates the demo model bundled with the checkout (assets/shapes-model). Steps, guidance and
the factors the flags leave out come from the model's recommended settings (`pipe.settings`); the values used are
printed and written into the JSON.

Each sample is a scene of the shapes world (`sample_scene`, seeds apart from the dataset's). Spatial reasoning makes a
prior from its image caption; one batched `animate` call, every video from the same starting noise, then makes: the
caption at 4 motion factors spread over the model's trained `motion_factor_range`, the caption at γa in
{0, 0.4, 0.8, 1.0}, the same shapes "moving left" and "moving right", and the caption at its own motion factor (the
*standard* video: by default the γm of the scene's ground-truth clip, measured on its latents as the trainer measures
it, so that "stays still" is asked for at 0 and "moves left quickly" at a quick move's γm; the other videos use one
fixed γm, --motion-factor). Measured on the frames (values in [0, 1]):

* motion_factor_spearman: Spearman correlation, over all samples, of γm with the mean absolute difference of
  consecutive frames (the pixel counterpart of γm, a frame-difference magnitude; it needs no tracking and covers every
  motion: moves, growth, spins and colour changes).
* appearance_factor_spearman: Spearman correlation of γa with the appearance change, the distance between the mean
  RGB colours of the first and the last frame (a translation barely changes it; a colour change or growth does).
* motion_factor_spearman_within, appearance_factor_spearman_within: the same correlations taken within each sample
  (its videos share the prior and the starting noise, only the factor changes), averaged over the samples: whether
  the factor orders one scene's videos, free of the spread between scenes.
* appearance_by_background: both γa correlations over each background kind's samples (black, grey, cyan), so that a
  γa that acts on one kind only shows. Each sample also records `brightness_change`, the signed change of mean
  brightness from the first to the last frame of each γa video: which way the light went.
* direction_accuracy: share of the left/right videos whose tracked shape (the caption's first colour) travels the
  right way (sign of its least-squares x displacement); direction_colour_kept: share of their frames showing it.
* prior_fidelity: share of standard videos whose middle frame (the trainer's spatial prior is the middle frame) has
  the prior image's dominant shape colour, its centroid within 10% of the frame side of the prior's (a colour change
  starts after the middle frame, so it counts too).
* text_adherence: share of standard videos whose first frame's dominant shape colour is one of the caption's and whose
  `classify_motion` equals the caption's motion (all nine motions; colour changes via the target's track);
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
  its text adherence depends on). Every model is sampled alike, prior then animation, at the evaluated model's
  steps, guidance and factors: a model trained without a prior or without the factors keeps those zero-initialised
  inputs at zero, so they do nothing.

Undefined figures (e.g. a Spearman correlation of constant measurements) print as nan and are null in the JSON.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..conditioning import appearance_matrix, motion_factors_from_latents
from ..evaluate import EvaluationError, load_for_evaluation, log, nan_mean, run_parameters
from ..pipeline_higen import HiGenPipeline, default_scheduler, text_states
from ..training.latents import higen_conditions
from .measures import (
    appearance_change,
    brightness_change,
    centroid,
    dominant_colour,
    frame_difference,
    measured_motion,
    presence,
    spearman,
    track_continuity,
    x_displacement,
)
from .world import SHAPE_COLOURS, parse_caption, render_video, sample_scene

# The demo model trained by the shapes recipe, committed beside the package in the repository's checkout; an
# installed package has no assets folder, hence the check in `demo_model`.
DEMO_MODEL = Path(__file__).resolve().parents[2] / "assets" / "shapes-model"
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


def demo_model() -> Path:
    """The bundled demo model's folder, the shapes suite's default --model."""
    if not (DEMO_MODEL / "model_index.json").is_file():
        raise EvaluationError(f"--suite shapes without --model evaluates the demo model bundled with the repository's "
                              f"checkout, and {DEMO_MODEL} holds none; pass --model DIR.")
    return DEMO_MODEL


def eval_scenes(seed: int, count: int) -> list:
    return [sample_scene(int(s)) for s in np.random.SeedSequence([seed, EVAL_STREAM]).generate_state(count)]


def direction_captions(scene) -> tuple[str, str]:
    """The scene's shapes "moving left" and "moving right" (at its speed, quickly if it has none)."""
    subject = " and ".join(f"a {o.colour} {o.shape}" for o in scene.objects)
    verb = "move" if len(scene.objects) > 1 else "moves"
    return tuple(f"{subject} {verb} {side} {scene.speed or 'quickly'} on a {scene.background} background"
                 for side in ("left", "right"))


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
    return {"text_adherence": nan_mean(r["adheres"] for r in records),
            "text_colour_accuracy": nan_mean(r["colour_ok"] for r in records),
            "text_motion_accuracy": nan_mean(r["motion_ok"] for r in records),
            "text_motion_accuracy_by_motion": {k: nan_mean(v) for k, v in sorted(by_motion.items())},
            "text_motion_videos_by_motion": {k: len(v) for k, v in sorted(by_motion.items())},
            "temporal_consistency": nan_mean(r["continuity"] for r in records), "videos": len(records)}


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
    measured = motion_factors_from_latents(clip_latents(pipe, scene), pipe.unet.config.motion_factor_measure,
                                           pipe.vae.config.scaling_factor)
    return min(max(float(measured.mean()), low), high)


def standard_motion_factor(pipe: HiGenPipeline, scene, standard_motion: str, fixed: float) -> float:
    if standard_motion == "clip":
        return clip_motion_factor(pipe, scene)
    if standard_motion == "fixed":
        return fixed
    raise EvaluationError(f"standard_motion must be 'clip' or 'fixed', not {standard_motion!r}.")


def run_shapes(pipe: HiGenPipeline, samples: int, steps: int, seed: int, guidance_scale: float, motion_factor: float,
               appearance_factor: float, feature_cache_interval: int = 1, standard_motion: str = "clip") -> dict:
    """The shapes suite on one model: every figure, its counts and the per-sample measurements. `motion_factor` and
    `appearance_factor` are the fixed γm and γa of the videos that do not sweep them; `standard_motion`: "clip"
    samples each standard video at its scene's ground-truth γm (`clip_motion_factor`), "fixed" at `motion_factor`."""
    levels = motion_factor_levels(pipe)
    motion_pairs, appearance_pairs, directions, colour_kept, standard, per_sample = [], [], [], [], [], []
    start = time.time()
    for i, scene in enumerate(eval_scenes(seed, samples)):
        left, right = direction_captions(scene)
        standard_gm = standard_motion_factor(pipe, scene, standard_motion, motion_factor)
        requests = ([(scene.caption, g, appearance_factor) for g in levels]
                    + [(scene.caption, motion_factor, g) for g in APPEARANCE_FACTORS]
                    + [(left, motion_factor, appearance_factor), (right, motion_factor, appearance_factor),
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
        per_sample.append({"seed": scene.seed, "caption": scene.caption, "background": scene.background,
                           "frame_difference": motion,
                           "appearance_change": appearance,
                           "brightness_change": [brightness_change(v) for v in by_appearance], "x_displacement": dx,
                           "standard_motion_factor": standard_gm, **standard[-1]})
        log(f"[shapes] sample {i + 1}/{samples} ({time.time() - start:.0f}s): {scene.caption}")
    return {
        "samples": samples,
        "motion_factors": levels, "appearance_factors": list(APPEARANCE_FACTORS),
        "standard_factors": {"motion_factor": motion_factor, "appearance_factor": appearance_factor,
                             "standard_motion": standard_motion},
        "motion_factor_spearman": spearman(*zip(*motion_pairs)),
        "motion_factor_spearman_within": nan_mean(spearman(levels, s["frame_difference"]) for s in per_sample),
        **appearance_figures(per_sample),
        "direction_accuracy": nan_mean(directions),
        "direction_colour_kept": nan_mean(colour_kept),
        "prior_fidelity": nan_mean(r["prior_ok"] for r in standard),
        **summarise_standard(standard),
        **motion_word_gap(pipe, seed, appearance_factor=appearance_factor),
        "motion_by_factor": _by_factor(motion_pairs), "appearance_by_factor": _by_factor(appearance_pairs),
        "appearance_by_background": appearance_by_background(per_sample),
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
    return {"motion_word_gap": nan_mean(gaps), "motion_word_wins": nan_mean(wins), "motion_word_clips": len(moving),
            "motion_word_timesteps": list(WORD_TIMESTEPS), "size_word_gap": nan_mean(size_gaps),
            "size_word_wins": nan_mean(size_wins), "size_word_clips": len(sizing)}


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
        # The trainer's own conditions: middle-frame prior, γm measured as the model was trained.
        conditions = higen_conditions(latents, rows, width, motion_factor_measure=unet.config.motion_factor_measure,
                                      scaling_factor=pipe.vae.config.scaling_factor)
        losses = []
        for caption in (scene.caption, swap(scene.caption)):
            states = text_states(pipe.tokenizer, pipe.text_encoder, [caption]).to(device, unet.dtype)
            prediction = unet(noisy.to(unet.dtype), timesteps, states.expand(len(timesteps), -1, -1),
                              **{k: v.to(unet.dtype) for k, v in conditions.items()}).sample
            losses.append((prediction.float() - target).pow(2).mean(dim=(1, 2, 3, 4)))
        gaps += (losses[1] / losses[0] - 1).tolist()
        wins += (losses[0] < losses[1]).tolist()
    return gaps, wins


def appearance_figures(samples: list[dict]) -> dict[str, float]:
    """appearance_factor_spearman (over every video of `samples`) and appearance_factor_spearman_within (per sample,
    averaged)."""
    pairs = [(g, change) for s in samples for g, change in zip(APPEARANCE_FACTORS, s["appearance_change"])]
    return {"appearance_factor_spearman": spearman(*zip(*pairs)),
            "appearance_factor_spearman_within": nan_mean(spearman(APPEARANCE_FACTORS, s["appearance_change"])
                                                          for s in samples)}


def appearance_by_background(per_sample: list[dict]) -> dict[str, dict]:
    """`appearance_figures` over each background kind's samples, and their count: γa must act on every background,
    not only on those whose light the training clips changed most."""
    figures = {}
    for background in sorted({s["background"] for s in per_sample}):
        samples = [s for s in per_sample if s["background"] == background]
        figures[background] = {**appearance_figures(samples), "samples": len(samples)}
    return figures


def _by_factor(pairs: list[tuple[float, float]]) -> dict[str, dict]:
    grouped: dict[float, list[float]] = {}
    for factor, value in pairs:
        grouped.setdefault(factor, []).append(value)
    return {f"{k:g}": {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)} for k, v in grouped.items()}


def run_standard(pipe: HiGenPipeline, samples: int, steps: int, seed: int, guidance_scale: float,
                 motion_factor: float, appearance_factor: float, feature_cache_interval: int = 1,
                 standard_motion: str = "clip") -> dict:
    """The ablation's measurements: the standard videos and the motion word gap."""
    records = []
    for scene in eval_scenes(seed, samples):
        standard_gm = standard_motion_factor(pipe, scene, standard_motion, motion_factor)
        request = (scene.caption, standard_gm, appearance_factor)
        prior_image, videos = generate_sample(pipe, scene, [request], steps, guidance_scale, feature_cache_interval)
        records.append(measure_standard(videos[0], prior_image, scene.caption))
    gaps = motion_word_gap(pipe, seed, appearance_factor=appearance_factor)
    return {**summarise_standard(records), **{key: gaps[key] for key in ABLATION_WORD_FIGURES}}


def run_suite(args: argparse.Namespace, device: torch.device) -> dict:
    """`python -m higen_core.evaluate --suite shapes`: the model (default: the bundled demo model) and the ablation
    rows measured at the parameters the flags give, or else the model's settings; prints and returns the figures."""
    if args.samples < 1:
        raise EvaluationError(f"--samples must be at least 1; got {args.samples}.")
    names = args.ablation_names or [Path(p).name for p in args.ablation]
    if len(names) != len(args.ablation):
        raise EvaluationError(f"--ablation-names gives {len(names)} names for {len(args.ablation)} --ablation "
                              f"folders.")
    if args.plots:
        _pyplot()  # before the run, not after it: a missing matplotlib must not cost the measurements
    model = args.model or str(demo_model())
    pipe = load_for_evaluation(model, device, args.scheduler)
    common = {**run_parameters(pipe, args.steps, args.guidance_scale, args.motion_factor, args.appearance_factor),
              "seed": args.seed, "feature_cache_interval": args.feature_cache_interval,
              "standard_motion": args.standard_motion}
    result = run_shapes(pipe, args.samples, **common)
    result = {"suite": "shapes", "model": model, "steps": common["steps"], "seed": args.seed,
              "guidance_scale": common["guidance_scale"], "motion_factor": common["motion_factor"],
              "appearance_factor": common["appearance_factor"], "scheduler": args.scheduler,
              "feature_cache_interval": args.feature_cache_interval, **result}
    print_shapes(result)
    if args.ablation:
        rows = []
        for name, path in zip(names, args.ablation):
            if Path(path).resolve() == Path(model).resolve():  # same model, same videos: measured already
                figures = {**summarise_standard(result["per_sample"]),
                           **{key: result[key] for key in ABLATION_WORD_FIGURES}}
            else:
                row_pipe = load_for_evaluation(path, device, args.scheduler, flag="--ablation")
                figures = run_standard(row_pipe, args.samples, **common)
            rows.append({"name": name, "model": path, **figures})
        result["ablation"] = rows
        print_ablation(rows)
    if args.plots:
        for path in write_plots(result, args.plots):
            print(f"wrote {path}")
    return result


def print_shapes(result: dict) -> None:
    c, n = result["counts"], result["samples"]
    low, high = result["motion_factors"][0], result["motion_factors"][-1]
    s = result["standard_factors"]
    preset = f", feature cache every {result['feature_cache_interval']} steps" if result["feature_cache_interval"] > 1 \
        else ""
    standard = (f"its clip's motion factor (mean "
                f"{nan_mean(r['standard_motion_factor'] for r in result['per_sample']):.1f})"
                if s["standard_motion"] == "clip" else f"motion factor {s['motion_factor']:g}")
    print(f"shapes suite: {result['model']}, {n} samples, {result['steps']} {result['scheduler']} steps{preset}, "
          f"guidance {result['guidance_scale']:g}; other videos at motion factor {s['motion_factor']:g}, each "
          f"standard video at {standard}; appearance factor {s['appearance_factor']:g}")
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
    by_background = ", ".join(f"{k} {v['appearance_factor_spearman']:.2f} pooled, "
                              f"{v['appearance_factor_spearman_within']:.2f} within ({v['samples']})"
                              for k, v in result["appearance_by_background"].items())
    print(f"  appearance factor by background (samples): {by_background}")
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
