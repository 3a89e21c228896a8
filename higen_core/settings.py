# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""The settings a model recommends for generation, carried in its pipeline folder.

A HiGen pipeline folder may record, under the key `settings` of its `model_index.json`, the values it works best at:

    "settings": {
      "motion_factor": 10, "motion_factor_range": [0, 20], "appearance_factor": 0.2, "guidance_scale": 3.0,
      "num_inference_steps": 50, "fps": 8,
      "example_prompts": ["a red circle on a cyan background"],
      "motion_examples": [{"label": "moves left (γm 17)", "motion_prompts": ["a red circle moves left ..."],
                           "motion_factor": 17}],
      "vocabulary": ["a", "red", "circle", ...]
    }

Every key is optional. The pipeline's calls, the CLI, the evaluation suites and the studio take their defaults from
`pipe.settings`; a key a folder does not record gets the paper's value (γa 1, guidance 12, 50 steps, 8 fps), and γm
gets the paper's 500 when the model's trained `motion_factor_range` holds it, else the middle of that range.

This module itself imports no torch: its checks are plain Python.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

PAPER_MOTION_FACTOR = 500.0
PAPER_APPEARANCE_FACTOR = 1.0
PAPER_GUIDANCE_SCALE = 12.0
PAPER_NUM_INFERENCE_STEPS = 50
DEFAULT_FPS = 8.0
# γm is embedded with the timestep's sinusoid, whose longest period is 10000 (unet_higen.MAX_PERIOD).
MAX_MOTION_FACTOR = 10000.0


class SettingsError(ValueError):
    """A model folder's `settings` that cannot be used; the message names the key."""


@dataclass(frozen=True)
class MotionExample:
    """A row of step 2's examples: motion prompts animated together, at the γm their motion has."""

    label: str
    motion_prompts: tuple[str, ...]
    motion_factor: float


@dataclass(frozen=True)
class HiGenSettings:
    """What a model recommends. `motion_factor_range` is the range its γm slider offers (by default the range the
    model was trained on); `vocabulary`, if the model declares one, is every word its text encoder was trained with."""

    motion_factor: float
    motion_factor_range: tuple[float, float]
    appearance_factor: float = PAPER_APPEARANCE_FACTOR
    guidance_scale: float = PAPER_GUIDANCE_SCALE
    num_inference_steps: int = PAPER_NUM_INFERENCE_STEPS
    fps: float = DEFAULT_FPS
    example_prompts: tuple[str, ...] = ()
    motion_examples: tuple[MotionExample, ...] = field(default=())
    vocabulary: tuple[str, ...] | None = None

    @classmethod
    def resolve(cls, recorded: dict | HiGenSettings | None, trained_range) -> HiGenSettings:
        """The settings of a model whose folder recorded `recorded` (None: nothing) and whose UNet was trained on
        motion factors in `trained_range`. Raises SettingsError naming a bad key."""
        if isinstance(recorded, HiGenSettings):
            return recorded
        values = dict(recorded or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SettingsError(f"settings: unknown keys {unknown}; known keys are {sorted(known)}.")
        low, high = _range(values.get("motion_factor_range", trained_range), "settings.motion_factor_range")
        default_motion = PAPER_MOTION_FACTOR if low <= PAPER_MOTION_FACTOR <= high else (low + high) / 2
        motion_factor = _number(values.get("motion_factor", default_motion), "settings.motion_factor", 0,
                                MAX_MOTION_FACTOR)
        if not low <= motion_factor <= high:
            raise SettingsError(f"settings.motion_factor {motion_factor:g} is outside settings.motion_factor_range "
                                f"{low:g}-{high:g}: record a value inside it.")
        steps = values.get("num_inference_steps", PAPER_NUM_INFERENCE_STEPS)
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise SettingsError(f"settings.num_inference_steps must be a positive integer; got {steps!r}.")
        vocabulary = values.get("vocabulary")
        return cls(
            motion_factor=motion_factor,
            motion_factor_range=(low, high),
            appearance_factor=_number(values.get("appearance_factor", PAPER_APPEARANCE_FACTOR),
                                      "settings.appearance_factor", 0, 1),
            guidance_scale=_number(values.get("guidance_scale", PAPER_GUIDANCE_SCALE), "settings.guidance_scale", 0,
                                   100),
            num_inference_steps=steps,
            fps=_number(values.get("fps", DEFAULT_FPS), "settings.fps", 1e-3, 1000),
            example_prompts=_strings(values.get("example_prompts", ()), "settings.example_prompts"),
            motion_examples=tuple(_motion_example(row, i, low, high)
                                  for i, row in enumerate(_list(values.get("motion_examples", ()),
                                                                "settings.motion_examples"))),
            vocabulary=None if vocabulary is None else _strings(vocabulary, "settings.vocabulary"),
        )

    def to_dict(self) -> dict:
        """The JSON form a pipeline folder records (lists, not tuples)."""
        values = asdict(self)
        values["motion_factor_range"] = list(self.motion_factor_range)
        values["example_prompts"] = list(self.example_prompts)
        values["motion_examples"] = [{**row, "motion_prompts": list(row["motion_prompts"])}
                                     for row in values["motion_examples"]]
        if self.vocabulary is None:
            del values["vocabulary"]
        else:
            values["vocabulary"] = list(self.vocabulary)
        return values

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` outside the model's declared vocabulary, in order, once each ([] without one)."""
        if self.vocabulary is None:
            return []
        known = set(self.vocabulary)
        words = [w.strip(".,;:!?\"'()").lower() for w in text.split()]
        return list(dict.fromkeys(w for w in words if w and w not in known))


def released_settings() -> HiGenSettings:
    """The released HiGen model's (the paper's): γm 500 in 300-600, γa 1, guidance 12, 50 DDIM steps."""
    return HiGenSettings(motion_factor=PAPER_MOTION_FACTOR, motion_factor_range=(300.0, 600.0))


def _number(value, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not (
            low <= value <= high):
        raise SettingsError(f"{name} must be a number from {low:g} to {high:g}; got {value!r}.")
    return float(value)


def _range(value, name: str) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise SettingsError(f"{name} must be [low, high]; got {value!r}.")
    low, high = (_number(v, name, 0, MAX_MOTION_FACTOR) for v in value)
    if low >= high:
        raise SettingsError(f"{name} must have low < high; got {list(value)!r}.")
    return low, high


def _list(value, name: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise SettingsError(f"{name} must be a list; got {type(value).__name__}.")
    return list(value)


def _strings(value, name: str) -> tuple[str, ...]:
    items = _list(value, name)
    if not all(isinstance(s, str) and s.strip() for s in items):
        raise SettingsError(f"{name} must be a list of non-empty strings.")
    return tuple(items)


def _motion_example(row, index: int, low: float, high: float) -> MotionExample:
    name = f"settings.motion_examples[{index}]"
    if not isinstance(row, dict) or set(row) != {"label", "motion_prompts", "motion_factor"}:
        raise SettingsError(f"{name} must be {{label, motion_prompts, motion_factor}}; got {row!r}.")
    if not isinstance(row["label"], str) or not row["label"].strip():
        raise SettingsError(f"{name}.label must be a non-empty string.")
    prompts = _strings(row["motion_prompts"], f"{name}.motion_prompts")
    if not prompts:
        raise SettingsError(f"{name}.motion_prompts must hold at least one prompt.")
    return MotionExample(row["label"], prompts, _number(row["motion_factor"], f"{name}.motion_factor", low, high))
