# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""The shapes world: a plug-in demo world for HiGen, whose answers are known. The core library never imports it.

    higen_core.shapes.world        scenes, their rendering, captions and measurement (`python -m higen_core.shapes`)
    higen_core.shapes.components   the world's small frozen VAE, tokenizer, text encoder and DINO
    higen_core.shapes.measures     measurements on generated frames
    higen_core.shapes.evaluate     the shapes suite of `python -m higen_core.evaluate --suite shapes`
    higen_core/shapes/configs/     the recipe of the bundled demo model (assets/shapes-model); recipe.md and
                                   RESULTS.md beside this file say how it was found and what it does
"""

from .world import (
    BACKGROUNDS,
    MOTIONS,
    SHAPE_COLOURS,
    SHAPES,
    Scene,
    SceneObject,
    Track,
    classify_motion,
    ground_truth,
    parse_caption,
    render_image,
    render_video,
    sample_scene,
    track,
    vocabulary,
    write_dataset,
)

__all__ = [
    "BACKGROUNDS", "MOTIONS", "SHAPES", "SHAPE_COLOURS", "Scene", "SceneObject", "Track", "classify_motion",
    "ground_truth", "parse_caption", "render_image", "render_video", "sample_scene", "track", "vocabulary",
    "write_dataset",
]
