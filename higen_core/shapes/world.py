# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""The shapes world: procedural text-video pairs whose answers are known, to train a small HiGen model and measure it.

    python -m higen_core.shapes --out shapes_data --videos 1000 --images 1000 [--frames 8 --size 64 --seed 0]

A scene (`sample_scene(seed)`, deterministic from the seed) is one or two shapes on a uniform background doing ONE
motion over the clip:

* shapes: circle, square, triangle, star; sizes are the diameter of the circumscribed circle.
* shape colours: red, green, blue, yellow, magenta, white; backgrounds: black, grey, cyan. All nine are corners or
  the centre of the RGB cube, at least 221 apart, so a pixel within `DEFAULT_TOLERANCE` (100) of one is nearer to it
  than to any other: colours segment by a distance threshold, even on noisy model outputs.
* motions: "moves left/right/up/down", "grows", "shrinks", "spins" (counter-clockwise), "changes colour" (to a second
  shape colour) and "stays still"; every motion but "stays still" has a speed, "slowly" or "quickly".

Motion is defined per clip, not per frame: at time t in [0, 1] (first to last frame) a shape has moved t times its
full displacement (0.2 of the frame slowly, 0.45 quickly), so a scene renders at any size and frame count and always
stays inside the frame (start positions are chosen for the whole path). Sizes change geometrically (x1.5 or x2.5 over
the clip), spins turn 90 or 180 degrees, colour changes start after the middle frame, at 2/3 of the clip, and blend
until its end (slowly) or until 0.8 of it (quickly); the colour inside a shape is uniform in every frame, with no
anti-aliasing, so it can be segmented.

Lighting (`sample_scene(seed, lighting=True)`, the dataset's `--lighting`): in half the scenes the light changes over
the clip, on the whole frame (background and shapes alike), by `LIGHT_CHANGE` of the way toward white or toward black
(black backgrounds can only brighten), and no caption says so. It is the kind of change HiGen's appearance factor γa
is for: one the text leaves open and a self-supervised image model sees (`components.train_appearance_model`'s
model sees it on every background). At most 0.2 of the way, every pixel stays within 88 of its named colour, inside
the tolerance that segments it.

Captions (`Scene.caption`; two shapes take plural verbs and always do the same motion):

    a red circle moves left quickly on a black background
    a red circle and a green square move up slowly on a grey background
    a red circle changes colour to blue slowly on a cyan background     (colour changes have one shape)
    a white star stays still on a black background                      ("stays still" has no speed)
    a red circle on a black background                                  (images: `Scene.image_caption`)

Measurement (`segment_colour`, `track`, `classify_motion`, `nearest_colour_name`) reads frames back: the centroid
track gives left/right/up/down, the area gives grows/shrinks, the overlap of each frame's mask with the first gives
spins (a spinning shape stays put but changes its pixels), and a second track of the target colour gives "changes
colour". Ground truth uses pixel coordinates in which pixel (row j, column i) has its centre at (x=i, y=j), the
convention of a mask's centroid.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star")
SHAPE_COLOURS = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
    "white": (255, 255, 255),
}
BACKGROUNDS = {"black": (0, 0, 0), "grey": (128, 128, 128), "cyan": (0, 255, 255)}
COLOURS = {**SHAPE_COLOURS, **BACKGROUNDS}
# Lighting: the share of scenes whose light changes and how far toward white or black by the last frame. 0.2 keeps
# every colour nearest its own name (white dimmed to 204 is 88 from white, 132 from grey).
LIGHT_SHARE = 0.5
LIGHT_CHANGE = (0.1, 0.2)

MOTIONS = ("moves left", "moves right", "moves up", "moves down", "grows", "shrinks", "spins", "changes colour",
           "stays still")
SPEEDS = ("slowly", "quickly")
UNKNOWN = "unknown"

# How much each speed does over a whole clip.
DISPLACEMENT = {"slowly": 0.2, "quickly": 0.45}  # fraction of the frame
GROWTH = {"slowly": 1.5, "quickly": 2.5}  # ratio of the largest to the smallest size
SPIN_DEGREES = {"slowly": 90.0, "quickly": 180.0}
# Colour changes blend over this part of the clip; the quick one is nearly a cut. Both start at 2/3, after the middle
# frame (index F // 2, at most 2/3 of the way for F >= 3): the trainer takes that frame as the spatial prior, so a
# colour change's prior shows its first colour, as a prior made from the image caption does. (When the blend ran
# through the middle, every prior of a colour change was a half-way colour, and a pure-colour prior at inference
# made the model keep its colour: colour changes never showed.)
COLOUR_WINDOW = {"slowly": (2 / 3, 1.0), "quickly": (2 / 3, 0.8)}

TWO_SHAPES_PROBABILITY = 0.3
MAX_SIZE = 0.4  # largest diameter, fraction of the frame
MARGIN = 0.03  # kept free between a shape and the edge of its region, fraction of the frame
SUPERSAMPLE = 4  # shapes are rasterised at 4x and thresholded: sub-pixel positions, pure colours

DEFAULT_TOLERANCE = 100.0  # less than half the smallest distance between two named colours (221)
# classify_motion's thresholds, about half of what the slow speeds produce.
MOVE_THRESHOLD = 0.1  # fraction of the frame
AREA_THRESHOLD = 1.5  # area ratio (slow growth gives 1.5 ** 2 = 2.25)
SPIN_OVERLAP = 0.8  # IoU with the first frame below which a shape that stays put counts as spinning


@dataclass(frozen=True)
class SceneObject:
    """One shape, as it is at the first frame; the scene's motion says what happens next."""

    shape: str
    colour: str
    x: float  # centre, fraction of the frame's width
    y: float  # centre, fraction of the frame's height (downwards)
    size: float  # diameter of the circumscribed circle, fraction of the frame
    target_colour: str | None = None  # the colour it ends with, for "changes colour"


@dataclass(frozen=True)
class Scene:
    seed: int
    objects: tuple[SceneObject, ...]
    motion: str
    speed: str | None  # None for "stays still"
    background: str
    # Uncaptioned: the share of the way toward white (> 0) or black (< 0) every pixel has gone by the last frame.
    light: float = 0.0

    @property
    def shape(self) -> str:
        return self.objects[0].shape

    @property
    def colour(self) -> str:
        return self.objects[0].colour

    @property
    def target_colour(self) -> str | None:
        return self.objects[0].target_colour

    @property
    def caption(self) -> str:
        phrase = _motion_phrase(self.motion, len(self.objects) > 1, self.target_colour)
        speed = f" {self.speed}" if self.speed else ""
        return f"{_subject(self)} {phrase}{speed} on a {self.background} background"

    @property
    def image_caption(self) -> str:
        return f"{_subject(self)} on a {self.background} background"


def _subject(scene: Scene) -> str:
    return " and ".join(f"a {o.colour} {o.shape}" for o in scene.objects)


def _motion_phrase(motion: str, plural: bool, target_colour: str | None) -> str:
    """The caption's words for a motion: "moves left" for one shape, "move left" for two."""
    if motion == "changes colour":
        return f"changes colour to {target_colour}"
    if not plural:
        return motion
    verb, *rest = motion.split()
    return " ".join([verb.removesuffix("s"), *rest])


# ---------------------------------------------------------------------------------------------------------------
# Sampling


def _regions(motion: str, num_objects: int) -> list[tuple[float, float, float, float]]:
    """(x_lo, x_hi, y_lo, y_hi) per object. Two shapes get halves of the frame split across their motion, so they
    never overlap and each keeps its full path."""
    if num_objects == 1:
        return [(0.0, 1.0, 0.0, 1.0)]
    if motion in ("moves left", "moves right"):
        return [(0.0, 1.0, 0.0, 0.5), (0.0, 1.0, 0.5, 1.0)]
    return [(0.0, 0.5, 0.0, 1.0), (0.5, 1.0, 0.0, 1.0)]


def _displacement(motion: str, speed: str | None) -> tuple[float, float]:
    distance = DISPLACEMENT.get(speed, 0.0)
    return {"moves left": (-distance, 0.0), "moves right": (distance, 0.0), "moves up": (0.0, -distance),
            "moves down": (0.0, distance)}.get(motion, (0.0, 0.0))


def _growth(motion: str, speed: str | None) -> float:
    """Size at the last frame over size at the first."""
    if motion == "grows":
        return GROWTH[speed]
    if motion == "shrinks":
        return 1.0 / GROWTH[speed]
    return 1.0


def _place(rng: np.random.Generator, shape: str, colour: str, target_colour: str | None,
           region: tuple[float, float, float, float], motion: str, speed: str | None) -> SceneObject:
    """A size and start position that keep the shape's circumscribed circle inside its region all clip long."""
    x_lo, x_hi, y_lo, y_hi = region
    dx, dy = _displacement(motion, speed)
    growth = _growth(motion, speed)
    largest = min(MAX_SIZE, x_hi - x_lo - abs(dx) - 2 * MARGIN, y_hi - y_lo - abs(dy) - 2 * MARGIN)
    peak = rng.uniform(0.55, 1.0) * largest
    radius = peak / 2
    x = rng.uniform(x_lo + MARGIN + radius - min(dx, 0.0), x_hi - MARGIN - radius - max(dx, 0.0))
    y = rng.uniform(y_lo + MARGIN + radius - min(dy, 0.0), y_hi - MARGIN - radius - max(dy, 0.0))
    return SceneObject(shape, colour, float(x), float(y), float(peak / max(growth, 1.0)), target_colour)


def sample_scene(seed: int, lighting: bool = False) -> Scene:
    """The scene for a seed: the same seed always gives the same scene. With `lighting`, half the scenes' light goes
    up or down by a random, uncaptioned amount; the rest of the scene is the same as without."""
    rng = np.random.default_rng(seed)
    motion = MOTIONS[rng.integers(len(MOTIONS))]
    speed = None if motion == "stays still" else SPEEDS[rng.integers(len(SPEEDS))]
    # Colour changes have one shape: two shapes changing colour would need a longer template and could swap colours.
    two = motion != "changes colour" and rng.random() < TWO_SHAPES_PROBABILITY
    num_objects = 2 if two else 1
    background = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    # Distinct colours, so each shape (and a colour change's target) can be segmented on its own.
    colours = [str(c) for c in rng.choice(list(SHAPE_COLOURS), size=num_objects + 1, replace=False)]
    target = colours[-1] if motion == "changes colour" else None
    # A spinning circle would look still.
    choices = [s for s in SHAPES if not (motion == "spins" and s == "circle")]
    objects = tuple(
        _place(rng, choices[rng.integers(len(choices))], colours[i], target, region, motion, speed)
        for i, region in enumerate(_regions(motion, num_objects))
    )
    # Drawn from a stream of its own, so that lighting leaves the rest of every scene as it was.
    light, stream = 0.0, np.random.default_rng([seed, 1])
    if lighting and stream.random() < LIGHT_SHARE:
        brighter = background == "black" or stream.random() < 0.5
        light = float(stream.uniform(*LIGHT_CHANGE)) * (1.0 if brighter else -1.0)
    return Scene(seed=int(seed), objects=objects, motion=motion, speed=speed, background=background, light=light)


# ---------------------------------------------------------------------------------------------------------------
# Ground truth and rendering


def _frame_times(num_frames: int) -> np.ndarray:
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1; got {num_frames}.")
    return np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)


def lit(rgb: Sequence[float], light: float, t: float) -> list[int]:
    """A colour under the scene's light at time t in [0, 1]: moved linearly toward white (light > 0) or black."""
    end = 255.0 if light > 0 else 0.0
    return [int(round(c + (end - c) * abs(light) * t)) for c in rgb]


def background_rgb(scene: Scene, t: float) -> list[int]:
    """The background's colour at time t in [0, 1]: its named colour under the scene's light."""
    return lit(BACKGROUNDS[scene.background], scene.light, t)


def _object_state(scene: Scene, obj: SceneObject, t: float, size: int) -> dict:
    dx, dy = _displacement(scene.motion, scene.speed)
    rgb, name = np.array(SHAPE_COLOURS[obj.colour], dtype=float), obj.colour
    if obj.target_colour is not None:
        start, end = COLOUR_WINDOW[scene.speed]
        mix = min(max((t - start) / (end - start), 0.0), 1.0)
        rgb += mix * (np.array(SHAPE_COLOURS[obj.target_colour]) - rgb)
        # A blend's nearest named colour can be a third one (red + blue is nearest grey): name the nearer end.
        name = obj.target_colour if mix >= 0.5 else obj.colour
    return {
        "shape": obj.shape,
        # Fractions of the frame -> pixel-centre coordinates: the frame spans [-0.5, size - 0.5].
        "x": (obj.x + dx * t) * size - 0.5,
        "y": (obj.y + dy * t) * size - 0.5,
        "size": obj.size * _growth(scene.motion, scene.speed) ** t * size,
        "rotation": SPIN_DEGREES[scene.speed] * t if scene.motion == "spins" else 0.0,
        "colour": name,
        "rgb": lit(rgb, scene.light, t),
    }


def frame_states(scene: Scene, num_frames: int, size: int = 64) -> list[list[dict]]:
    """Per frame, per shape: {"shape", "x", "y" (centre, pixels), "size" (circumscribed diameter, pixels),
    "rotation" (degrees, counter-clockwise), "colour" (its name; mid colour change, the nearer of the two), "rgb"}."""
    return [[_object_state(scene, obj, float(t), size) for obj in scene.objects] for t in _frame_times(num_frames)]


def ground_truth(scene: Scene, num_frames: int, size: int = 64) -> dict:
    """The scene's plain fields and its per-frame states, ready for JSON."""
    return {
        "seed": scene.seed,
        "caption": scene.caption,
        "image_caption": scene.image_caption,
        "motion": scene.motion,
        "speed": scene.speed,
        "shape": scene.shape,
        "colour": scene.colour,
        "target_colour": scene.target_colour,
        "shapes": [o.shape for o in scene.objects],
        "colours": [o.colour for o in scene.objects],
        "background": scene.background,
        "background_rgb": list(BACKGROUNDS[scene.background]),
        "light": scene.light,
        "background_rgbs": [background_rgb(scene, float(t)) for t in _frame_times(num_frames)],
        "num_frames": num_frames,
        "size": size,
        "frames": frame_states(scene, num_frames, size),
    }


def _vertices(shape: str, x: float, y: float, diameter: float, rotation: float) -> list[tuple[float, float]]:
    """Polygon vertices around (x, y); every shape's centroid is its centre, so a mask's centroid measures it."""
    radius = diameter / 2
    if shape == "circle":
        angles, radii = np.arange(48) * 7.5, np.full(48, radius)
    elif shape == "square":
        angles, radii = 45.0 + np.arange(4) * 90.0, np.full(4, radius)
    elif shape == "triangle":
        angles, radii = -90.0 + np.arange(3) * 120.0, np.full(3, radius)  # pointing up
    elif shape == "star":
        # Inner radius 0.45 (a regular pentagram's is 0.38): thicker arms survive small frames.
        angles, radii = -90.0 + np.arange(10) * 36.0, np.where(np.arange(10) % 2 == 0, radius, 0.45 * radius)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}.")
    # y points down, so subtracting the rotation turns counter-clockwise on screen.
    theta = np.deg2rad(angles - rotation)
    return list(zip((x + radii * np.cos(theta)).tolist(), (y + radii * np.sin(theta)).tolist()))


def _rasterise(vertices: list[tuple[float, float]], size: int) -> np.ndarray:
    """(size, size) bool mask of the pixels at least half covered: drawn at SUPERSAMPLE x, box-averaged, thresholded,
    so positions and sizes move by fractions of a pixel while every pixel stays one pure colour."""
    canvas = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 0)
    # PIL puts pixel i's area at [i, i + 1]; our pixel i is centred on i.
    ImageDraw.Draw(canvas).polygon([((vx + 0.5) * SUPERSAMPLE, (vy + 0.5) * SUPERSAMPLE) for vx, vy in vertices],
                                   fill=255)
    return np.asarray(canvas.reduce(SUPERSAMPLE)) >= 128


def _render_frame(states: list[dict], background: list[int], size: int) -> np.ndarray:
    frame = np.empty((size, size, 3), dtype=np.uint8)
    frame[:] = background
    for state in states:
        vertices = _vertices(state["shape"], state["x"], state["y"], state["size"], state["rotation"])
        frame[_rasterise(vertices, size)] = state["rgb"]
    return frame


def render_video(scene: Scene, num_frames: int, size: int = 64) -> np.ndarray:
    """(num_frames, size, size, 3) uint8 frames; the first shows t = 0, the last t = 1."""
    return np.stack([_render_frame(states, background_rgb(scene, float(t)), size)
                     for t, states in zip(_frame_times(num_frames), frame_states(scene, num_frames, size))])


def render_image(scene: Scene, size: int = 64) -> tuple[np.ndarray, str]:
    """A still: the scene's first frame, (size, size, 3) uint8, and its caption without motion."""
    return render_video(scene, 1, size)[0], scene.image_caption


# ---------------------------------------------------------------------------------------------------------------
# Captions


def _phrases() -> dict[str, tuple[str, str | None, bool]]:
    """Every motion phrase a caption can hold -> (motion, target colour, plural): the templates, inverted."""
    phrases = {}
    for motion in MOTIONS:
        targets = list(SHAPE_COLOURS) if motion == "changes colour" else [None]
        plurals = (False,) if motion == "changes colour" else (False, True)
        for target in targets:
            for plural in plurals:
                phrases[_motion_phrase(motion, plural, target)] = (motion, target, plural)
    return phrases


_PHRASES = _phrases()
_OBJECT = rf"a ({'|'.join(SHAPE_COLOURS)}) ({'|'.join(SHAPES)})"
_CAPTION = re.compile(rf"{_OBJECT}(?: and {_OBJECT})?(?: (.+?))? on a ({'|'.join(BACKGROUNDS)}) background")


def parse_caption(caption: str) -> dict:
    """A caption from the templates -> {"shape", "colour" (the first shape's), "shapes", "colours", "motion",
    "speed", "target_colour", "background"}; motion and speed are None for image captions. Raises ValueError for
    any other text."""
    match = _CAPTION.fullmatch(caption.strip())
    if match is None:
        raise ValueError(f"not a shapes-world caption: {caption!r}")
    colour, shape, colour2, shape2, phrase, background = match.groups()
    shapes, colours = [shape] + ([shape2] if shape2 else []), [colour] + ([colour2] if colour2 else [])
    motion = speed = target = None
    if phrase is not None:
        *words, last = phrase.split()
        if last in SPEEDS:
            phrase, speed = " ".join(words), last
        if phrase not in _PHRASES:
            raise ValueError(f"unknown motion {phrase!r} in caption {caption!r}")
        motion, target, plural = _PHRASES[phrase]
        if plural != (len(shapes) > 1) or (speed is None) != (motion == "stays still"):
            raise ValueError(f"not a shapes-world caption: {caption!r}")
    return {"shape": shape, "colour": colour, "shapes": shapes, "colours": colours, "motion": motion,
            "speed": speed, "target_colour": target, "background": background}


def vocabulary() -> list[str]:
    """Every word any caption can contain, sorted."""
    words = {"a", "and", "on", "background", *SHAPES, *SHAPE_COLOURS, *BACKGROUNDS, *SPEEDS}
    for phrase in _PHRASES:
        words.update(phrase.split())
    return sorted(words)


# ---------------------------------------------------------------------------------------------------------------
# Measurement


@dataclass
class Track:
    """One colour followed through a clip; NaN where it is absent."""

    x: np.ndarray  # (F,) centroid column, pixels
    y: np.ndarray  # (F,) centroid row, pixels
    area: np.ndarray  # (F,) pixels
    overlap: np.ndarray  # (F,) IoU of the frame's mask with the first present frame's
    height: int
    width: int


def _to_rgb_255(frames: np.ndarray) -> np.ndarray:
    """Integer frames are read in [0, 255]; floating-point ones in [0, 1], as diffusers' "np" outputs are."""
    frames = np.asarray(frames)
    if frames.shape[-1] != 3:
        raise ValueError(f"frames must end in 3 RGB channels; got shape {frames.shape}.")
    if np.issubdtype(frames.dtype, np.floating):
        return frames.astype(np.float32) * 255.0
    return frames.astype(np.float32)


def segment_colour(frames: np.ndarray, rgb: Sequence[float], tolerance: float = DEFAULT_TOLERANCE) -> np.ndarray:
    """(..., H, W, 3) frames -> (..., H, W) bool: pixels within `tolerance` (RGB Euclidean, 0-255 scale) of rgb."""
    distance = np.linalg.norm(_to_rgb_255(frames) - np.asarray(rgb, dtype=np.float32), axis=-1)
    return distance <= tolerance


def track(frames: np.ndarray, rgb: Sequence[float], tolerance: float = DEFAULT_TOLERANCE, min_area: int = 1) -> Track:
    """Centroid, area and overlap with the first sighting of one colour in each frame of (F, H, W, 3) frames. A
    frame with fewer than `min_area` matching pixels has no sighting (raise it for noisy outputs)."""
    masks = segment_colour(frames, rgb, tolerance)
    num_frames, height, width = masks.shape
    x, y, area, overlap = (np.full(num_frames, np.nan) for _ in range(4))
    rows, cols = np.mgrid[0:height, 0:width]
    first = None
    for f, mask in enumerate(masks):
        count = int(mask.sum())
        if count < max(min_area, 1):
            continue
        x[f], y[f], area[f] = cols[mask].mean(), rows[mask].mean(), count
        first = mask if first is None else first
        overlap[f] = (mask & first).sum() / (mask | first).sum()
    return Track(x, y, area, overlap, height, width)


def _change_over_clip(values: np.ndarray, present: np.ndarray) -> float:
    """Least-squares slope times the clip's length: the whole clip's change, robust to noise in single frames."""
    frames = np.flatnonzero(present)
    slope = np.polyfit(frames, values[present], 1)[0]
    return float(slope * (len(values) - 1))


def classify_motion(track: Track, target: Track | None = None) -> str:
    """The motion name that explains a track, or "unknown" when the colour is missing at the first or last frame.

    Moves left/right/up/down when the fitted centroid travels at least MOVE_THRESHOLD of the frame, else grows or
    shrinks when the fitted area changes by AREA_THRESHOLD, else spins when a frame's mask overlaps the first one's
    by less than SPIN_OVERLAP, else stays still. "changes colour" needs `target`, the track of the colour it should
    end as: the first colour present only at the start and the target only at the end.
    """
    present = ~np.isnan(track.area)
    if target is not None:
        there = ~np.isnan(target.area)
        if present[0] and not present[-1] and there[-1] and not there[0]:
            return "changes colour"
    if not (present[0] and present[-1]) or present.sum() < 2:
        return UNKNOWN
    dx = _change_over_clip(track.x, present) / track.width
    dy = _change_over_clip(track.y, present) / track.height
    if max(abs(dx), abs(dy)) >= MOVE_THRESHOLD:
        if abs(dx) >= abs(dy):
            return "moves right" if dx > 0 else "moves left"
        return "moves down" if dy > 0 else "moves up"
    area_ratio = math.exp(_change_over_clip(np.log(track.area), present))
    if area_ratio >= AREA_THRESHOLD:
        return "grows"
    if area_ratio <= 1.0 / AREA_THRESHOLD:
        return "shrinks"
    if np.nanmin(track.overlap) < SPIN_OVERLAP:
        return "spins"
    return "stays still"


def nearest_colour_name(rgb: Sequence[float]) -> str:
    """The named colour (shape or background) nearest to rgb, on the 0-255 scale."""
    names = list(COLOURS)
    distances = np.linalg.norm(np.array([COLOURS[n] for n in names], dtype=float) - np.asarray(rgb, float), axis=-1)
    return names[int(np.argmin(distances))]


# ---------------------------------------------------------------------------------------------------------------
# Dataset


def _scene_seed(seed: int, kind: int, index: int) -> int:
    """Independent scene seeds per (dataset seed, videos/images, index), stable across dataset sizes."""
    return int(np.random.SeedSequence([seed, kind, index]).generate_state(1)[0])


def write_mp4(path: str | Path, frames: np.ndarray, fps: float = 8) -> None:
    """H.264 yuv420p at CRF 10 (High profile, which every player decodes): named colours come back within a few
    levels. Frame sides must be even (4:2:0 chroma)."""
    num_frames, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"H.264 yuv420p needs even frame sides; got {width}x{height}.")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "10"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())  # flush the encoder's delayed frames


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def write_dataset(folder: str | Path, num_videos: int, num_images: int, num_frames: int = 8, size: int = 64,
                  fps: float = 8, seed: int = 0, lighting: bool = False) -> dict:
    """Write videos/NNNNNN.mp4, images/NNNNNN.png and the manifests videos.jsonl and images.jsonl ({"path",
    "caption"}, paths relative to `folder`) and ground_truth.jsonl (`ground_truth` plus "path" and "kind").

    `lighting`: half the clips' light changes by an uncaptioned amount (`sample_scene`); images, first frames, show
    none of it.

    Returns {"folder", "videos", "images", "ground_truth" (manifest paths), "num_videos", "num_images"}.
    """
    folder = Path(folder)
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    videos, images, truths = [], [], []
    for i in range(num_videos):
        scene = sample_scene(_scene_seed(seed, 0, i), lighting)
        path = f"videos/{i:06d}.mp4"
        write_mp4(folder / path, render_video(scene, num_frames, size), fps)
        videos.append({"path": path, "caption": scene.caption})
        truths.append({"path": path, "kind": "video", **ground_truth(scene, num_frames, size)})
    for i in range(num_images):
        scene = sample_scene(_scene_seed(seed, 1, i))
        path = f"images/{i:06d}.png"
        image, caption = render_image(scene, size)
        Image.fromarray(image).save(folder / path)
        images.append({"path": path, "caption": caption})
        # An image shows no motion: its record keeps the scene's shapes and colours, not its motion.
        truths.append({**ground_truth(scene, 1, size), "path": path, "kind": "image", "caption": caption,
                       "motion": None, "speed": None, "target_colour": None})
    paths = {name: folder / f"{name}.jsonl" for name in ("videos", "images", "ground_truth")}
    for name, records in (("videos", videos), ("images", images), ("ground_truth", truths)):
        _write_jsonl(paths[name], records)
    return {"folder": str(folder), **{name: str(path) for name, path in paths.items()},
            "num_videos": num_videos, "num_images": num_images}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m higen_core.shapes", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="dataset folder")
    parser.add_argument("--videos", type=int, default=0, help="number of videos")
    parser.add_argument("--images", type=int, default=0, help="number of images")
    parser.add_argument("--frames", type=int, default=8, help="frames per video")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels (even)")
    parser.add_argument("--fps", type=float, default=8.0, help="frame rate of the videos")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument("--lighting", action="store_true",
                        help="half the clips' light goes up or down, uncaptioned (what the appearance factor learns)")
    args = parser.parse_args(argv)
    result = write_dataset(args.out, args.videos, args.images, num_frames=args.frames, size=args.size,
                           fps=args.fps, seed=args.seed, lighting=args.lighting)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
