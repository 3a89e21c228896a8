"""The measurements on frames get the known answer on the world's own ground-truth clips."""

import dataclasses
import math

import numpy as np
import pytest

from higen_core.shapes import measures
from higen_core.shapes.world import SHAPE_COLOURS, render_video, sample_scene

SCENES = [sample_scene(seed) for seed in range(240)]


def test_direction_of_ground_truth_moves_is_always_right():
    moving = [s for s in SCENES if s.motion in ("moves left", "moves right")]
    assert len(moving) > 30
    for s in moving:
        dx = measures.x_displacement(render_video(s, 8, 64), SHAPE_COLOURS[s.colour])
        assert (dx < 0) == (s.motion == "moves left"), s.caption
        assert measures.presence(render_video(s, 8, 64), SHAPE_COLOURS[s.colour]) == 1.0
    # A colour the clip does not show has no direction.
    absent = next(c for c in SHAPE_COLOURS if c not in {o.colour for o in moving[0].objects})
    assert math.isnan(measures.x_displacement(render_video(moving[0], 8, 64), SHAPE_COLOURS[absent]))


def test_motion_measure_rises_with_speed(one_shape_scene):
    # The same move sampled every k-th frame: k times the motion per frame.
    clip = render_video(one_shape_scene("moves right", x=0.25), 25, 64)
    speeds = [1, 2, 3, 4, 6]
    motion = [measures.frame_difference(clip[::k]) for k in speeds]
    assert measures.spearman(speeds, motion) == pytest.approx(1.0)
    assert measures.frame_difference(render_video(one_shape_scene("stays still", None), 8, 64)) == 0.0


def test_appearance_measure_sees_colour_not_position(one_shape_scene):
    colour_change = one_shape_scene("changes colour", "slowly", target="blue")
    change = measures.appearance_change(render_video(colour_change, 8, 64))
    move = measures.appearance_change(render_video(one_shape_scene("moves right", x=0.3), 8, 64))
    assert change > 0.03 and move < 1e-3
    # Partial colour changes (the blend starts after the middle frame): the clip cut after 5, 6, 7, 8 of 8 frames.
    clip = render_video(colour_change, 8, 64)
    cuts = [measures.appearance_change(clip[:n]) for n in (5, 6, 7, 8)]
    assert measures.spearman([5, 6, 7, 8], cuts) == pytest.approx(1.0)


def test_brightness_change_says_which_way_the_light_went(one_shape_scene):
    scene = one_shape_scene("moves right", x=0.3)
    brighter, darker = (render_video(dataclasses.replace(scene, light=light), 8, 64) for light in (0.15, -0.15))
    assert measures.brightness_change(brighter) > 0.02 and measures.brightness_change(darker) < -0.02
    assert measures.brightness_change(render_video(scene, 8, 64)) == pytest.approx(0.0, abs=1e-3)


def test_track_continuity_drops_for_vanishing_and_noisy_frames(one_shape_scene):
    moving = one_shape_scene("moves right", x=0.3)
    caption, clip = moving.caption, render_video(moving, 8, 64)
    assert measures.track_continuity(clip, caption) == 1.0
    vanished = clip.copy()
    vanished[3] = vanished[0, 0, 0]  # background only
    assert measures.track_continuity(vanished, caption) == pytest.approx(5 / 7)
    noise = np.random.default_rng(0).integers(0, 256, clip.shape, dtype=np.uint8)
    assert measures.track_continuity(noise, caption) == 0.0
