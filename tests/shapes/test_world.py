"""The shapes world: deterministic scenes, captions that parse back, ground truth that matches the pixels, and a
dataset the training loader can read."""

import dataclasses
import itertools
import json

import av
import numpy as np
import pytest
from PIL import Image

from higen_core.shapes import world as shapes
from higen_core.shapes.world import (
    BACKGROUNDS,
    COLOURS,
    MOTIONS,
    SHAPE_COLOURS,
    SHAPES,
    classify_motion,
    frame_states,
    nearest_colour_name,
    parse_caption,
    render_image,
    render_video,
    sample_scene,
    segment_colour,
    track,
    vocabulary,
    write_dataset,
)

SEEDS = range(300)


def first_scene(**fields):
    """The first seed whose scene has these fields (e.g. motion="grows", speed="slowly")."""
    num_objects = fields.pop("num_objects", None)
    for seed in itertools.count():
        scene = sample_scene(seed)
        if all(getattr(scene, k) == v for k, v in fields.items()) and num_objects in (None, len(scene.objects)):
            return scene


def measured_motion(frames, scene, index=0):
    obj = scene.objects[index]
    target = track(frames, SHAPE_COLOURS[obj.target_colour]) if obj.target_colour else None
    return classify_motion(track(frames, SHAPE_COLOURS[obj.colour]), target)


def test_scenes_and_renders_are_deterministic_from_the_seed():
    for seed in (0, 1, 12345):
        assert sample_scene(seed) == sample_scene(seed)
        np.testing.assert_array_equal(render_video(sample_scene(seed), 8, 32), render_video(sample_scene(seed), 8, 32))
    assert len({sample_scene(seed).caption for seed in range(50)}) > 40


def test_the_world_covers_every_value():
    scenes = [sample_scene(seed) for seed in SEEDS]
    assert {s.motion for s in scenes} == set(MOTIONS)
    assert {s.speed for s in scenes} == {"slowly", "quickly", None}
    assert {o.shape for s in scenes for o in s.objects} == set(SHAPES)
    assert {o.colour for s in scenes for o in s.objects} == set(SHAPE_COLOURS)
    assert {s.background for s in scenes} == set(BACKGROUNDS)
    assert {len(s.objects) for s in scenes} == {1, 2}
    for s in scenes:
        assert (s.speed is None) == (s.motion == "stays still")
        colours = [o.colour for o in s.objects] + ([s.target_colour] if s.target_colour else [])
        assert len(set(colours)) == len(colours)  # each colour segments one shape
        assert not (s.motion == "spins" and "circle" in [o.shape for o in s.objects])


def test_named_colours_are_far_apart():
    distances = [np.linalg.norm(np.subtract(a, b)) for a, b in itertools.combinations(COLOURS.values(), 2)]
    assert min(distances) > 2 * shapes.DEFAULT_TOLERANCE
    for name, rgb in COLOURS.items():
        assert nearest_colour_name(rgb) == name
        assert nearest_colour_name(np.clip(np.add(rgb, (40, -40, 40)), 0, 255)) == name


def test_captions_parse_back_to_the_scene():
    words = set(vocabulary())
    for seed in SEEDS:
        scene = sample_scene(seed)
        parsed = parse_caption(scene.caption)
        assert parsed == {
            "shape": scene.shape, "colour": scene.colour, "shapes": [o.shape for o in scene.objects],
            "colours": [o.colour for o in scene.objects], "motion": scene.motion, "speed": scene.speed,
            "target_colour": scene.target_colour, "background": scene.background,
        }
        image = parse_caption(scene.image_caption)
        assert image["motion"] is None and image["speed"] is None and image["target_colour"] is None
        assert image["shapes"] == parsed["shapes"] and image["background"] == scene.background
        assert set(scene.caption.split()) <= words


def test_caption_templates():
    assert parse_caption("a red circle and a green square move up slowly on a black background")["motion"] == "moves up"
    assert parse_caption("a red circle changes colour to blue quickly on a cyan background")["target_colour"] == "blue"
    for bad in ("a purple circle moves left slowly on a black background",
                "a red circle move left slowly on a black background",  # plural verb, one shape
                "a red circle moves left on a black background",  # no speed
                "a red circle stays still slowly on a black background",
                "a red circle moves sideways slowly on a black background",
                "a corgi on the beach"):
        with pytest.raises(ValueError):
            parse_caption(bad)


def test_shapes_stay_inside_the_frame():
    for seed, num_frames in itertools.product(SEEDS, (2, 8)):
        for objects in frame_states(sample_scene(seed), num_frames, size=64):
            for o in objects:
                radius = o["size"] / 2
                assert -0.5 <= o["x"] - radius and o["x"] + radius <= 63.5
                assert -0.5 <= o["y"] - radius and o["y"] + radius <= 63.5


def test_pixels_hold_only_the_named_colours():
    scene = first_scene(motion="moves right", num_objects=2)
    frames = render_video(scene, 8, 32)
    allowed = {BACKGROUNDS[scene.background]} | {SHAPE_COLOURS[o.colour] for o in scene.objects}
    assert {tuple(p) for p in frames.reshape(-1, 3)} == allowed


def test_track_recovers_the_true_centroids():
    for seed in range(60):
        scene = sample_scene(seed)
        if scene.motion == "changes colour":
            continue
        frames = render_video(scene, 8, 64)
        truth = frame_states(scene, 8, 64)
        for k, obj in enumerate(scene.objects):
            measured = track(frames, SHAPE_COLOURS[obj.colour])
            assert np.abs(measured.x - [f[k]["x"] for f in truth]).max() <= 1.0
            assert np.abs(measured.y - [f[k]["y"] for f in truth]).max() <= 1.0


@pytest.mark.parametrize("speed", ["slowly", "quickly"])
@pytest.mark.parametrize("motion", MOTIONS)
def test_classify_motion_recovers_the_motion(motion, speed):
    speed = None if motion == "stays still" else speed
    for num_objects in (1, 2) if motion != "changes colour" else (1,):
        scene = first_scene(motion=motion, speed=speed, num_objects=num_objects)
        frames = render_video(scene, 8, 64)
        for k in range(num_objects):
            assert measured_motion(frames, scene, k) == motion, scene.caption


def test_classify_motion_reads_noisy_float_frames():
    rng = np.random.default_rng(0)
    for motion in MOTIONS:
        scene = first_scene(motion=motion)
        frames = render_video(scene, 8, 32) / 255.0  # floats in [0, 1], as a pipeline's "np" output
        noisy = np.clip(frames + rng.normal(0, 0.08, frames.shape), 0, 1)
        assert measured_motion(noisy, scene) == motion, scene.caption


def test_track_marks_absent_frames_and_classify_says_unknown():
    scene = first_scene(motion="changes colour")
    frames = render_video(scene, 8, 32)
    measured = track(frames, SHAPE_COLOURS[scene.colour])
    assert not np.isnan(measured.area[0]) and np.isnan(measured.area[-1])
    assert classify_motion(measured) == "unknown"
    truth = frame_states(scene, 8, 32)
    assert truth[0][0]["colour"] == scene.colour and truth[-1][0]["colour"] == scene.target_colour
    assert truth[-1][0]["rgb"] == list(SHAPE_COLOURS[scene.target_colour])
    mask = segment_colour(frames[0], SHAPE_COLOURS[scene.colour])
    assert mask.shape == (32, 32) and mask.sum() == measured.area[0]


@pytest.mark.parametrize("speed", ["slowly", "quickly"])
def test_a_colour_change_keeps_its_first_colour_until_after_the_middle_frame(speed):
    """The trainer's spatial prior is the middle frame: for a colour change it must show the first colour, as the prior
    a user makes from the image caption does, or the model never learns to change a pure-colour prior."""
    scene = first_scene(motion="changes colour", speed=speed)
    for num_frames in range(3, 17):
        frames = render_video(scene, num_frames, 32)
        np.testing.assert_array_equal(frames[num_frames // 2], frames[0])
        assert segment_colour(frames[-1], SHAPE_COLOURS[scene.target_colour]).any()
        assert not segment_colour(frames[-1], SHAPE_COLOURS[scene.colour]).any()


def test_render_image_is_the_first_frame_with_a_motionless_caption():
    scene = first_scene(motion="moves left", num_objects=2)
    image, caption = render_image(scene, size=32)
    np.testing.assert_array_equal(image, render_video(scene, 8, 32)[0])
    assert caption == scene.image_caption and "move" not in caption


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_write_dataset_writes_decodable_videos_images_and_manifests(tmp_path):
    result = write_dataset(tmp_path, num_videos=4, num_images=3, num_frames=8, size=32, fps=8, seed=0)
    assert result["num_videos"] == 4 and result["num_images"] == 3
    videos, images = read_jsonl(tmp_path / "videos.jsonl"), read_jsonl(tmp_path / "images.jsonl")
    truths = read_jsonl(tmp_path / "ground_truth.jsonl")
    assert [v["path"] for v in videos] == [f"videos/{i:06d}.mp4" for i in range(4)]
    assert [set(record) for record in videos + images] == [{"path", "caption"}] * 7
    assert [(t["path"], t["caption"]) for t in truths] == [(r["path"], r["caption"]) for r in videos + images]

    for video, truth in zip(videos, truths):
        with av.open(str(tmp_path / video["path"])) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264" and stream.format.name == "yuv420p"
            frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        assert frames.shape == (8, 32, 32, 3)
        assert parse_caption(video["caption"])["motion"] == truth["motion"]
        scene = sample_scene(truth["seed"])
        assert scene.caption == video["caption"]
        # The colours survive compression: the decoded clip measures like the rendered one.
        assert measured_motion(frames, scene) == truth["motion"]
        if truth["motion"] != "changes colour":
            measured = track(frames, SHAPE_COLOURS[truth["colour"]])
            assert np.abs(measured.x - [f[0]["x"] for f in truth["frames"]]).max() <= 1.0

    for image, truth in zip(images, truths[4:]):
        pixels = np.asarray(Image.open(tmp_path / image["path"]).convert("RGB"))
        np.testing.assert_array_equal(pixels, render_image(sample_scene(truth["seed"]), 32)[0])
        assert truth["kind"] == "image" and truth["motion"] is None
        assert parse_caption(image["caption"])["motion"] is None


def test_datasets_are_deterministic_and_the_cli_writes_one(tmp_path):
    assert shapes.main(["--out", str(tmp_path / "a"), "--videos", "2", "--images", "2", "--size", "16"]) == 0
    write_dataset(tmp_path / "b", 2, 2, size=16)
    for name in ("videos.jsonl", "images.jsonl", "ground_truth.jsonl"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    for path in ("images/000001.png", "videos/000001.mp4"):
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes()


def test_lighting_changes_half_the_scenes_on_every_background_and_leaves_the_rest_of_the_scene():
    changed = {name: [] for name in BACKGROUNDS}
    for seed in SEEDS:
        plain, lit = sample_scene(seed), sample_scene(seed, lighting=True)
        # The caption never says so, and the shapes do exactly what they did without lighting.
        assert (lit.caption, lit.objects, lit.motion) == (plain.caption, plain.objects, plain.motion)
        assert plain.light == 0.0
        assert lit.light == 0.0 or shapes.LIGHT_CHANGE[0] <= abs(lit.light) <= shapes.LIGHT_CHANGE[1]
        assert not (lit.background == "black" and lit.light < 0)  # black cannot darken
        changed[lit.background].append(lit.light)
    for background, lights in changed.items():
        assert 0.25 * len(lights) < sum(light != 0 for light in lights) < 0.75 * len(lights), background
    for background in ("grey", "cyan"):
        assert min(changed[background]) < 0 < max(changed[background])  # these go either way


# The largest change each way; black cannot darken.
LIGHTS = [(b, sign * shapes.LIGHT_CHANGE[1]) for b in BACKGROUNDS for sign in (-1, 1) if (b, sign) != ("black", -1)]


@pytest.mark.parametrize(("background", "light"), LIGHTS)
def test_a_change_of_light_is_in_every_pixel_and_the_ground_truth_and_keeps_every_colour_named(background, light):
    plain = next(s for s in (sample_scene(seed) for seed in SEEDS)
                 if s.background == background and s.motion == "moves right")
    scene = dataclasses.replace(plain, light=light)
    frames, truth = render_video(scene, 8, 64), shapes.ground_truth(scene, 8, 64)
    corners = frames[:, 0, 0]  # the shapes keep off the frame's edge
    np.testing.assert_array_equal(corners, truth["background_rgbs"])
    assert truth["light"] == light
    np.testing.assert_array_equal(frames[0], render_video(plain, 8, 64)[0])  # it starts as the unlit scene
    end = 255 if light > 0 else 0
    expected = [round(c + (end - c) * abs(light)) for c in BACKGROUNDS[background]]
    assert list(corners[-1]) == expected
    shape_rgb = [round(c + (end - c) * abs(light)) for c in shapes.SHAPE_COLOURS[scene.colour]]
    assert truth["frames"][-1][0]["rgb"] == shape_rgb  # the shapes are lit too
    # Every frame still shows the named colours, so the measurements segment them and the motion measures as before.
    assert {nearest_colour_name(c) for c in corners} == {background}
    assert nearest_colour_name(shape_rgb) == scene.colour
    assert measured_motion(frames, scene) == scene.motion


def test_the_cli_writes_a_lit_dataset(tmp_path):
    assert shapes.main(["--out", str(tmp_path), "--videos", "12", "--images", "2", "--size", "16", "--lighting"]) == 0
    truths = read_jsonl(tmp_path / "ground_truth.jsonl")
    videos = [t for t in truths if t["kind"] == "video"]
    assert any(t["light"] != 0 for t in videos)
    assert all(t["light"] == 0 for t in truths if t["kind"] == "image")  # an image is a first frame
    assert [t["caption"] for t in videos] == [sample_scene(t["seed"]).caption for t in videos]
