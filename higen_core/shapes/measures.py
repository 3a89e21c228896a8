# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""Measurements on generated (F, H, W, 3) frames, floats in [0, 1] or uint8, with the shapes world's colours: the
motion and appearance measures, a colour's direction and presence, the dominant colour, the caption's motion as
`shapes.classify_motion` sees it, and track continuity. `higen_core.shapes.evaluate` builds its figures from them;
each gets the known answer on the world's own ground-truth clips (`tests/shapes/test_measures.py`; the colour,
centroid and motion measures through the standard-video checks of `tests/shapes/test_shapes_evaluate.py`)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import scipy.stats

from .world import (
    BACKGROUNDS,
    COLOURS,
    DEFAULT_TOLERANCE,
    SHAPE_COLOURS,
    classify_motion,
    parse_caption,
    segment_colour,
    track,
)

MIN_AREA_FRACTION = 6 / 64**2  # fewer matching pixels than this (6 at 64x64) is noise, not a shape
CONTINUITY_STEP = 0.15  # fraction of the frame side; a quick move covers 0.064 per frame at 8 frames
CONTINUITY_AREA = 2.0
MAX_SHAPE_AREA = 0.5  # of the frame; the world's largest scenes (two grown shapes) cover about a quarter


def as_float(video: np.ndarray) -> np.ndarray:
    video = np.asarray(video)
    return video.astype(np.float32) / 255.0 if video.dtype == np.uint8 else video.astype(np.float32)


def min_area(video: np.ndarray) -> int:
    return max(1, round(video.shape[-3] * video.shape[-2] * MIN_AREA_FRACTION))


def frame_difference(video: np.ndarray) -> float:
    """Mean absolute difference of consecutive frames: the motion measure."""
    video = as_float(video)
    return float(np.abs(video[1:] - video[:-1]).mean())


def appearance_change(video: np.ndarray) -> float:
    """Euclidean distance of the first and last frames' mean RGB colours: the appearance measure."""
    video = as_float(video)
    return float(np.linalg.norm(video[0].mean((0, 1)) - video[-1].mean((0, 1))))


def brightness_change(video: np.ndarray) -> float:
    """Mean brightness of the last frame minus the first's (all pixels and channels): which way the light went, which
    `appearance_change` (a distance) does not say."""
    video = as_float(video)
    return float(video[-1].mean() - video[0].mean())


def x_displacement(video: np.ndarray, rgb: Sequence[float]) -> float:
    """Least-squares slope of the colour's centroid column times the clip length (pixels); NaN if it is found in
    fewer than two frames."""
    found = track(as_float(video), rgb, min_area=min_area(video))
    present = ~np.isnan(found.x)
    if present.sum() < 2:
        return math.nan
    frames = np.flatnonzero(present)
    return float(np.polyfit(frames, found.x[present], 1)[0] * (len(video) - 1))


def presence(video: np.ndarray, rgb: Sequence[float]) -> float:
    """Share of frames in which the colour is found."""
    return float((~np.isnan(track(as_float(video), rgb, min_area=min_area(video)).area)).mean())


def dominant_colour(frame: np.ndarray) -> str | None:
    """The shape colour most pixels of one (H, W, 3) frame are within tolerance of (each pixel counted for its
    nearest named colour), or None when no shape colour covers the minimum area."""
    pixels = as_float(frame).reshape(-1, 3) * 255.0
    palette = np.array(list(COLOURS.values()), dtype=np.float32)
    distances = np.linalg.norm(pixels[:, None] - palette, axis=-1)
    nearest = distances.argmin(1)[distances.min(1) <= DEFAULT_TOLERANCE]
    counts = {name: int((nearest == i).sum()) for i, name in enumerate(COLOURS) if name in SHAPE_COLOURS}
    name = max(counts, key=counts.get)
    return name if counts[name] >= min_area(frame[None]) else None


def centroid(frame: np.ndarray, colour: str) -> tuple[float, float] | None:
    found = track(as_float(frame)[None], SHAPE_COLOURS[colour], min_area=min_area(frame[None]))
    return None if np.isnan(found.x[0]) else (float(found.x[0]), float(found.y[0]))


def measured_motion(video: np.ndarray, caption: str) -> str:
    """`classify_motion` of the caption's first colour (with its target's track for a colour change)."""
    parsed, video = parse_caption(caption), as_float(video)
    area = min_area(video)
    target = parsed["target_colour"]
    target_track = track(video, SHAPE_COLOURS[target], min_area=area) if target else None
    return classify_motion(track(video, SHAPE_COLOURS[parsed["colour"]], min_area=area), target_track)


def track_continuity(video: np.ndarray, caption: str) -> float:
    """Share of consecutive frame pairs in which the caption's shapes (every pixel not of its background colour, so
    that colour blends count) are found in both, move at most CONTINUITY_STEP of the frame side and change their
    area at most CONTINUITY_AREA times. Shapes are not found in a frame that has lost its background (over
    MAX_SHAPE_AREA of it is something else): noise must not pass as a steady shape."""
    video = as_float(video)
    masks = ~segment_colour(video, BACKGROUNDS[parse_caption(caption)["background"]])
    area = masks.sum((1, 2)).astype(np.float64)
    area[(area < min_area(video)) | (area > MAX_SHAPE_AREA * masks[0].size)] = np.nan
    rows, cols = np.mgrid[0:video.shape[1], 0:video.shape[2]]
    with np.errstate(invalid="ignore", divide="ignore"):  # frames without shapes: NaN, which compares False below
        x, y = (masks * cols).sum((1, 2)) / area, (masks * rows).sum((1, 2)) / area
        step = np.hypot(np.diff(x), np.diff(y)) / max(video.shape[1:3])
        ratio = np.exp(np.abs(np.diff(np.log(area))))
    return float(np.mean((step <= CONTINUITY_STEP) & (ratio <= CONTINUITY_AREA)))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    with warnings.catch_warnings():  # constant input: the correlation is undefined, NaN says so
        warnings.simplefilter("ignore")
        return float(scipy.stats.spearmanr(x, y).statistic)
