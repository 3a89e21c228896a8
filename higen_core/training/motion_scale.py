# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""What the motion factor measures on your clips: every candidate measure's percentiles, with the model's own.

    python -m higen_core.training.motion_scale --config my.yaml [--clips 64] [--any training field]

A model's γm slider means what its training measured (`conditioning.MOTION_FACTOR_MEASURES`); a fine-tune must measure
the same way, and its clips should land in the model's `motion_factor_range`. This reads clips exactly as the trainer
does (video_data, num_frames, fps, height, width, seed), encodes them with the run's VAE, and prints, for each measure,
the 10th/50th/90th percentiles over frame pairs and over clips (a clip's mean), and the share of clips whose mean lies
in the model's range. The measure that puts ordinary clips inside the range is the one the model was trained with.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from ..conditioning import MOTION_FACTOR_MEASURES, motion_factors_from_latents
from .config import ConfigError, TrainConfig, parse_args
from .data import SkipStats, VideoClipDataset
from .latents import encode_pixels, sample_latents
from .models import load_components


@torch.no_grad()
def measure_clips(config: TrainConfig, clips: int) -> dict:
    """{"model": its measure and range, "clips": usable count, "skipped": {reason: n}, "measures": {measure:
    {"pairs": [p10, p50, p90], "clips": [p10, p50, p90], "clips_in_range": share}}}."""
    if not config.video_data:
        raise ConfigError("video_data", "give the videos to measure (manifests or folders; shards are not read here)")
    components = load_components(config)
    vae, unet = components.vae, components.unet
    stats = SkipStats()
    dataset = VideoClipDataset(config.video_data, config.num_frames, config.fps, config.height, config.width,
                               stats=stats, seed=config.seed)
    scaling = vae.config.scaling_factor
    torch.manual_seed(config.seed)  # the posterior draw
    per_measure = {measure: [] for measure in MOTION_FACTOR_MEASURES}
    for i in range(min(clips, len(dataset))):
        item = dataset[i]
        if item is None:
            continue
        moments, _ = encode_pixels(components, item["pixel_values"][None], unet.config.appearance_width)
        latents = sample_latents(moments, scaling)  # (1, C, F, h, w), as training sees them
        for measure in MOTION_FACTOR_MEASURES:
            per_measure[measure].append(motion_factors_from_latents(latents, measure, scaling)[0].numpy())
    if not per_measure[MOTION_FACTOR_MEASURES[0]]:
        raise ConfigError("video_data", f"no usable clip: {stats.summary()}")
    low, high = unet.config.motion_factor_range

    def percentiles(values) -> list[float]:
        return [round(float(np.percentile(values, q)), 2) for q in (10, 50, 90)]

    measures = {}
    for measure, rows in per_measure.items():
        means = np.array([row.mean() for row in rows])
        measures[measure] = {"pairs": percentiles(np.concatenate(rows)), "clips": percentiles(means),
                             "clips_in_range": round(float(((means >= low) & (means <= high)).mean()), 3)}
    return {"model": {"motion_factor_measure": unet.config.motion_factor_measure,
                      "motion_factor_range": [low, high]},
            "clips": len(per_measure[MOTION_FACTOR_MEASURES[0]]), "skipped": dict(stats.counts),
            "size": [config.num_frames, config.height, config.width, config.fps], "measures": measures}


def format_report(report: dict) -> str:
    model = report["model"]
    low, high = model["motion_factor_range"]
    frames, height, width, fps = report["size"]
    lines = [f"{report['clips']} clips of {frames} frames, {width}x{height} at {fps:g} fps; the model measures "
             f"{model['motion_factor_measure']} and was trained on γm {low:g}-{high:g}.",
             f"{'measure':20s} {'frame pairs p10/p50/p90':>28s} {'clip means p10/p50/p90':>28s} "
             f"{'clips in range':>15s}"]
    for measure, row in report["measures"].items():
        mark = "  <- the model's" if measure == model["motion_factor_measure"] else ""
        pairs, clips = ("/".join(f"{v:g}" for v in row[key]) for key in ("pairs", "clips"))
        lines.append(f"{measure:20s} {pairs:>28s} {clips:>28s} {row['clips_in_range']:>15.0%}{mark}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--help" in argv or "-h" in argv:
        print(__doc__.strip() + "\n\n--clips N: clips to measure, one per video from the first (default 64); --json: "
              "print the report as JSON; every training field as in `python -m higen_core.train --help`.")
        return 0
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--clips", type=int, default=64)
    own.add_argument("--json", action="store_true")
    args, rest = own.parse_known_args(argv)
    try:
        if args.clips < 1:
            raise ConfigError("clips", f"must be at least 1; got {args.clips}.")
        config, _ = parse_args(rest)
        report = measure_clips(config, args.clips)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
