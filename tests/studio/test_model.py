"""The studio's handlers (studio.model), called as plain methods on the tiny model (and on the bundled demo model):
no UI, no server."""

import json
import pickle
import re
import shutil
import subprocess
import sys
import types
import warnings
from pathlib import Path

import av

import numpy as np
import PIL.Image
import pytest
import torch

from higen_core import video_io
from higen_core.shapes.world import parse_caption
from studio import JobStopped, StudioError
from studio.access import ModelSources
from studio.model import (MAX_MOTION_PROMPTS, StudioModel, animate_gpu_seconds, convert_vgen_cached,
                          parse_motion_prompts, shown_name, time_left, zero_gpu)

FAST = {"steps": 2, "guidance": 1.0}  # the fewest steps that still have a middle; no guidance halves the batch


def prior(model, session, prompt="a red ball", **kwargs):
    return model.generate_prior(session, prompt, seed=kwargs.pop("seed", 11), num_candidates=kwargs.pop("n", 1),
                                **FAST, **kwargs)


def test_generate_prior_makes_candidates_with_files_and_reusable_seeds(model, session):
    batch = prior(model, session, n=3, seed=40)
    assert batch.seed == 40
    assert [p.settings["seed"] for p in batch.priors] == [40, 41, 42]
    assert session.candidates == [p.id for p in batch.priors]
    assert session.current_prior is batch.priors[0]  # the first candidate is current until another is chosen
    for p in batch.priors:
        assert p.image_path.is_file() and p.image_path.parent == session.folder
        assert json.loads(p.image_path.with_suffix(".json").read_text())["prompt"] == "a red ball"
        assert tuple(p.latents.shape) == (1, 4, 8, 8)
    # Candidate k alone, from its own seed, is the same image: every seed shown can be reused.
    again = prior(model, session, seed=41)
    torch.testing.assert_close(again.priors[0].latents, batch.priors[1].latents, atol=1e-4, rtol=1e-4)


def test_randomized_seed_is_reported_and_reproduces(model, session):
    first = prior(model, session, randomize_seed=True)
    again = prior(model, session, seed=first.seed, randomize_seed=False)
    torch.testing.assert_close(first.priors[0].latents, again.priors[0].latents)


def test_animate_batches_every_motion_prompt_on_the_same_prior(model, session, monkeypatch):
    made = prior(model, session, "a red ball").priors[0]
    calls = {"generate_prior": 0, "animate": []}
    real_generate, real_animate = model.pipe.generate_prior, model.pipe.animate

    def count_prior(*args, **kwargs):
        calls["generate_prior"] += 1
        return real_generate(*args, **kwargs)

    def spy_animate(prior_latents, prompts, *args, **kwargs):
        calls["animate"].append((prior_latents, list(prompts)))
        return real_animate(prior_latents, prompts, *args, **kwargs)

    monkeypatch.setattr(model.pipe, "generate_prior", count_prior)
    monkeypatch.setattr(model.pipe, "animate", spy_animate)
    result = model.animate(session, "it rolls left\n\n  it jumps  \n", 40, 0.5, 5, seed=3, steps=2, guidance=5.0)
    again = model.animate(session, "it spins", 60, 1.0, 3, seed=3, **FAST)

    # One batched call per Animate, on the stored prior: spatial reasoning never runs again.
    assert calls["generate_prior"] == 0
    assert [prompts for _, prompts in calls["animate"]] == [["it rolls left", "it jumps"], ["it spins"]]
    for latents, _ in calls["animate"]:
        assert latents is made.latents
    assert [v.settings["motion_prompt"] for v in result.videos] == ["it rolls left", "it jumps"]
    assert again.videos[0].settings["prior"]["id"] == made.id

    for video in result.videos:
        frames = video_io.read_mp4_frames(video.mp4_path)
        assert frames.shape == (5, 16, 16, 3) and frames.dtype == np.uint8
        settings = json.loads(video.json_path.read_text())
        assert video_io.read_mp4_metadata(video.mp4_path) == settings
        assert settings["motion_factor"] == 40 and settings["appearance_factor"] == 0.5
        assert settings["seed"] == 3 and settings["num_frames"] == 5 and settings["model"] == "tiny"
        with PIL.Image.open(video.gif_path) as gif:
            assert gif.n_frames == 5 and gif.info["loop"] == 0  # loops forever
    assert session.last_videos == again.videos
    assert session.history[-3:] == [*result.videos, *again.videos]


def test_one_video_alone_reproduces_its_batch_member(model, session):
    prior(model, session)
    batch = model.animate(session, "left\nright", 50, 1.0, 3, seed=9, **FAST)
    alone = model.animate(session, "right", 50, 1.0, 3, seed=9, **FAST)
    np.testing.assert_allclose(video_io.read_mp4_frames(batch.videos[1].mp4_path).astype(float),
                               video_io.read_mp4_frames(alone.videos[0].mp4_path).astype(float), atol=2)


def test_motion_prompts_default_to_the_prior_prompt(model, session):
    prior(model, session, "a blue cube")
    result = model.animate(session, "   \n", 50, 1.0, 2, seed=1, **FAST)
    assert [v.settings["motion_prompt"] for v in result.videos] == ["a blue cube"]
    assert parse_motion_prompts(["a", " ", "b "]) == ["a", "b"]


def test_stop_keeps_the_videos_the_last_step_predicts_marked_partial(model, session):
    prior(model, session)
    steps_seen = []

    def press_stop_after_second_step(step, desc=None):
        steps_seen.append(step)
        if step == (2, 10):
            model.request_stop(session)

    result = model.animate(session, "it rolls\nit bounces", 50, 1.0, 3, steps=10, guidance=1.0, seed=1,
                           progress=press_stop_after_second_step)
    assert steps_seen == [(1, 10), (2, 10)]  # left the loop at the next step's callback
    assert result.partial and session.last_videos == result.videos and len(result.videos) == 2
    for video in result.videos:
        assert video.settings["partial"] == {"steps_done": 3, "num_inference_steps": 10}
        assert json.loads(video.json_path.read_text())["partial"] == video.settings["partial"]
        assert video_io.read_mp4_metadata(video.mp4_path)["partial"]["steps_done"] == 3
        assert video_io.read_mp4_frames(video.mp4_path).shape[0] == 3
        assert "partial: stopped after 3 of 10 steps" in video.label
    assert not session.stop.is_set()  # the request was used up
    assert not session.preview_folder.exists()

    result = model.animate(session, "it rolls", 50, 1.0, 2, seed=1, **FAST)
    assert len(result.videos) == 1 and not result.partial and "partial" not in result.videos[0].settings


def test_a_stopped_prior_job_keeps_nothing(model, session):
    before = sorted(session.folder.iterdir())
    with pytest.raises(JobStopped):
        model.generate_prior(session, "a red ball", seed=1, steps=5, guidance=1.0,
                             progress=lambda step, desc=None: model.request_stop(session))
    assert sorted(session.folder.iterdir()) == before and not session.stop.is_set()


def test_progress_says_how_long_is_left(model, session):
    reports = []
    model.generate_prior(session, "a ball", steps=3, guidance=1.0,
                         progress=lambda step, desc=None: reports.append((step, desc)))
    assert [step for step, _ in reports] == [(1, 3), (2, 3), (3, 3)]
    assert all(re.search(r" · about \d+ s left$", desc) for _, desc in reports[:2])
    assert " left" not in reports[-1][1]  # done
    assert (time_left(20, 2, 10), time_left(60, 1, 3), time_left(5, 4, 4)) == ("about 80 s left", "about 2 min left",
                                                                               "")


def test_an_animation_shows_a_live_preview_while_it_runs(model, session):
    prior(model, session)
    seen = []

    def look(step, desc=None):
        seen.append(session.latest_preview())

    model.animate(session, "it rolls", 50, 1.0, 3, steps=10, guidance=1.0, seed=1, progress=look)
    # Every 2 of 10 steps, but not after the last: the video itself follows. Each is an MP4 of the clip's frames,
    # enlarged to a visible size, written beside the denoising (one due while another is written is skipped); the
    # folder is gone when the job ends.
    written = [entry for entry in seen if entry is not None]
    assert written and {entry[1:] for entry in written} <= {(2, 10), (4, 10), (6, 10), (8, 10)}
    assert not Path(written[-1][0]).exists() and not session.preview_folder.exists()


def test_a_preview_is_the_prediction_through_the_map_enlarged(tmp_path):
    from studio.preview import PreviewWriter

    writer = PreviewWriter(tmp_path / "preview", torch.eye(3, 4), torch.zeros(3), total=10, fps=8.0, scale=4)
    denoised = torch.zeros(1, 4, 3, 2, 2)
    denoised[0, 0, :, 0, 0] = 1.0  # the top-left latent pixel of every frame: red through the map
    writer(2, denoised)
    writer.close()
    frames = video_io.read_mp4_frames(tmp_path / "preview" / "preview-0002-of-0010.mp4")
    assert frames.shape == (3, 8, 8, 3)  # 2x2 latents, 4 times larger
    assert frames[0, 1, 1, 0] > 200 and frames[0, 6, 6, 0] < 160
    writer(4, denoised * 0)
    writer.close()
    assert [p.name for p in (tmp_path / "preview").iterdir()] == ["preview-0004-of-0010.mp4"]  # the older one goes


def test_the_preview_map_is_the_least_squares_fit_of_a_prior_to_its_picture():
    from studio.preview import latent_rgb_projection

    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 6, 5, generator=generator) * 0.3
    weight, bias = torch.randn(3, 4, generator=generator) * 0.4, torch.tensor([0.1, -0.2, 0.05])
    rgb = (torch.einsum("chw,rc->hwr", latents[0], weight) + bias).clamp(-1, 1)
    image = PIL.Image.fromarray(((rgb + 1) * 127.5).round().to(torch.uint8).numpy())
    fitted_weight, fitted_bias = latent_rgb_projection(latents, image)
    torch.testing.assert_close(fitted_weight, weight, atol=0.03, rtol=0)
    torch.testing.assert_close(fitted_bias, bias, atol=0.01, rtol=0)


def test_a_stop_pressed_while_idle_does_not_stop_the_next_job(model, session):
    model.request_stop(session)
    assert prior(model, session).priors


@pytest.mark.parametrize("kwargs, message", [
    ({"motion_prompts": "x", "motion_factor": -5}, "Motion factor γm must be a number from 0 to 10000; got -5"),
    ({"motion_prompts": "x", "appearance_factor": 2}, "Appearance factor γa must be a number from 0 to 1"),
    ({"motion_prompts": "x", "num_frames": 99}, "Frames must be a whole number from 2 to 8"),
    ({"motion_prompts": "x", "steps": 0}, "Steps must be a whole number"),
    ({"motion_prompts": "x", "seed": -1}, "Seed must be a whole number"),
    ({"motion_prompts": "\n".join("abcdefgh"[:MAX_MOTION_PROMPTS + 1])}, "At most"),
])
def test_invalid_animate_inputs_are_clear_errors(model, session, kwargs, message):
    prior(model, session)
    with pytest.raises(StudioError, match=message.replace("[", r"\[").replace("]", r"\]")):
        model.animate(session, **{"steps": 2, **kwargs})


def test_invalid_prior_inputs_and_missing_prior(model, session):
    with pytest.raises(StudioError, match="Enter a prompt"):
        model.generate_prior(session, "  ", **FAST)
    with pytest.raises(StudioError, match="Candidates must be"):
        model.generate_prior(session, "x", num_candidates=9, **FAST)
    with pytest.raises(StudioError, match="no spatial prior yet"):
        model.animate(session, "x", **FAST)


def test_out_of_memory_becomes_advice(model, session, monkeypatch):
    prior(model, session)

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(model.pipe, "animate", out_of_memory)
    with pytest.raises(StudioError, match="ran out of memory.*CPU offload.*fewer frames"):
        model.animate(session, "x", **FAST)


def test_use_my_own_image(model, session, tmp_path):
    path = tmp_path / "mine.jpg"
    PIL.Image.new("RGB", (64, 40), (200, 30, 30)).save(path)
    made = model.use_image(session, str(path))
    assert session.current_prior is made and made.settings["source"] == "upload"
    assert tuple(made.latents.shape) == (1, 4, 8, 8)
    torch.testing.assert_close(made.latents, model.pipe.encode_prior_image(PIL.Image.open(path)).cpu())
    result = model.animate(session, "it melts", 50, 1.0, 2, seed=1, **FAST)
    assert result.videos[0].settings["prior"]["file"] == "mine.jpg"


def test_an_uploaded_image_is_cropped_where_asked_or_fitted_whole(model, session, tmp_path):
    from studio.model import frame_image

    # 60x20: a red third, a green third, a blue third; the tiny model's frame is square.
    thirds = PIL.Image.new("RGB", (60, 20))
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        thirds.paste(colour, (20 * i, 0, 20 * i + 20, 20))
    for position, colour in ((0.0, (255, 0, 0)), (0.5, (0, 255, 0)), (1.0, (0, 0, 255))):
        window = frame_image(thirds, 16, 16, "crop", position)
        assert window.size == (20, 20) and window.getpixel((10, 10)) == colour
    fitted = frame_image(thirds, 16, 16, "fit", 0.5)
    assert fitted.size == (60, 60) and fitted.getpixel((30, 5)) == (0, 0, 0) and fitted.getpixel((5, 30)) == (255, 0, 0)
    tall = frame_image(thirds.rotate(90, expand=True), 32, 16, "crop", 0.0)  # 20x60 into 2:1: trims the bottom
    assert tall.size == (20, 10)

    path = tmp_path / "thirds.png"
    thirds.save(path)
    left = model.use_image(session, str(path), framing="crop", position=0.0)
    whole = model.use_image(session, str(path), framing="fit")
    assert (left.settings["framing"], left.settings["crop_position"], whole.settings["framing"]) == ("crop", 0.0, "fit")
    assert "crop_position" not in whole.settings
    torch.testing.assert_close(left.latents, model.pipe.encode_prior_image(frame_image(thirds, 16, 16, "crop", 0)))
    with pytest.raises(StudioError, match="^Framing must be one of crop, fit; got 'stretch'.$"):
        model.use_image(session, str(path), framing="stretch")
    with pytest.raises(StudioError, match=r"^The crop position must be a number from 0 to 1; got 2.$"):
        model.use_image(session, str(path), position=2)


def test_every_file_of_a_session_lives_in_its_folder_and_goes_with_it(model, store, tmp_path):
    """Candidates, an uploaded prior and each video's MP4, GIF and JSON: all in the session's own folder, where no
    other session sees them, and all deleted with the session."""
    session, other = store.ensure(None), store.ensure(None)
    prior(model, session, n=2)
    upload = tmp_path / "mine.png"
    PIL.Image.new("RGB", (16, 16), (200, 30, 30)).save(upload)
    model.use_image(session, str(upload))
    result = model.animate(session, "it rolls\nit bounces", 50, 1.0, 2, seed=1, **FAST)
    files = [p.image_path for p in session.priors.values()]
    files += [p.image_path.with_suffix(".json") for p in session.priors.values()]
    files += [Path(f) for video in result.videos for f in video.files]
    assert len(files) == 3 * 2 + 2 * 3
    assert all(f.is_file() and f.parent == session.folder for f in files)
    store.delete(session.id)
    assert not any(f.exists() for f in files)
    # What is left under the store's root is the other session's folder, untouched.
    left = [path for path in store.root.rglob("*") if path.is_file()]
    assert all(other.folder in path.parents for path in left)


def test_uploads_are_validated(model, session, tmp_path, monkeypatch):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    truncated = tmp_path / "cut.png"
    PIL.Image.new("RGB", (300, 300), (1, 2, 3)).save(tmp_path / "full.png")
    truncated.write_bytes((tmp_path / "full.png").read_bytes()[:200])
    tiff = tmp_path / "scan.tiff"
    PIL.Image.new("RGB", (8, 8)).save(tiff)
    for path, message in ((text, "not a readable image"), (truncated, "not a readable image"),
                          (tiff, "TIFF images are not supported"), (None, "Choose an image")):
        with pytest.raises(StudioError, match=message):
            model.use_image(session, path)
    monkeypatch.setattr("studio.model.MAX_UPLOAD_BYTES", 100)
    with pytest.raises(StudioError, match="the limit is"):
        model.use_image(session, tmp_path / "full.png")
    assert session.current_prior is None


def test_choose_prior_by_gallery_path_or_by_encoding_a_foreign_image(model, session, tmp_path):
    batch = prior(model, session, n=2)
    cached_copy = tmp_path / "gradio-cache" / batch.priors[1].image_path.name  # Gradio keeps the file name
    cached_copy.parent.mkdir()
    cached_copy.write_bytes(batch.priors[1].image_path.read_bytes())
    assert model.choose_prior(session, str(cached_copy)) is batch.priors[1]
    example = tmp_path / "example.png"
    PIL.Image.new("RGB", (16, 16), (0, 90, 0)).save(example)
    encoded = model.choose_prior(session, str(example), prompt="a green field")
    assert encoded.settings["source"] == "gallery" and encoded.prompt == "a green field"
    assert session.current_prior is encoded


def test_remix_sends_settings_back(model, session):
    made = prior(model, session, "a kite", seed=5).priors[0]
    video = model.animate(session, "it flies", 42, 0.25, 2, seed=8, interpolation=2, quality=30, **FAST).videos[0]
    assert model.remix(session, made.id) == ("prior", {"prompt": "a kite", "negative_prompt": "", "seed": 5,
                                                       "steps": 2, "guidance": 1.0})
    session.current_prior_id = None
    kind, values = model.remix(session, video.id)
    assert kind == "video" and session.current_prior is made
    assert values == {"motion_prompts": "it flies", "motion_factor": 42, "appearance_factor": 0.25,
                      "num_frames": 2, "duration": 0.25, "steps": 2, "guidance": 1.0, "seed": 8,
                      "interpolation": 2, "upscale": 1, "quality": 30}
    with pytest.raises(StudioError, match="gone"):
        model.remix(session, "nope")


def test_gpu_jobs_take_picklable_arguments(model, session):
    """On ZeroGPU a job's arguments are pickled to a forked worker: no locks, sessions or closures in them."""
    made = prior(model, session).priors[0]
    pickle.dumps((made.latents, ["a", "b"], "", 50.0, 1.0, 8, 3, 5.0, 1, session.stop, None))
    status, (latents, images) = model._prior_job("x", "", [1], 2, 5.0, session.stop, None)
    pickle.dumps((status, latents, images))


def test_zero_gpu_wraps_with_a_duration_from_frames_and_steps(monkeypatch):
    def job(*args):
        return args

    monkeypatch.setitem(sys.modules, "spaces", None)  # not installed
    assert zero_gpu(job, animate_gpu_seconds) is job
    seen = {}

    def gpu(fn, duration):
        seen["duration"] = duration
        return fn

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=gpu))
    assert zero_gpu(job, animate_gpu_seconds) is job
    short = seen["duration"](None, ["a"], "", 500, 1.0, 16, 25, 9.0, 0, None, None)
    long = seen["duration"](None, ["a", "b"], "", 500, 1.0, 32, 50, 9.0, 0, None, None)
    assert 0 < short < long <= 300


def test_model_sources(model, tmp_path):
    for source, message in ((str(tmp_path / "missing"), "no such folder"), (str(tmp_path), "no model_index.json")):
        with pytest.raises(StudioError, match=message):
            StudioModel.load(source)
    with pytest.raises(StudioError, match="dtype must be one of"):
        StudioModel.load("tiny", dtype="float8")
    with pytest.raises(StudioError, match="not a torch device"):
        StudioModel.load("tiny", device="toaster")
    with pytest.raises(StudioError, match="needs a GPU"):
        model.set_offload("model")
    with pytest.raises(StudioError, match="CPU offload must be one of none, model, sequential; got True"):
        model.set_offload(True)
    assert model.set_offload("none")["offload"] == "none"


def test_each_offload_mode_asks_diffusers_for_it_on_a_gpu(monkeypatch):
    """What a GPU gets, checked here by a model that believes it is on one and records what the pipeline is asked
    to do (moving anything to a GPU needs one)."""
    model = StudioModel.load("tiny")
    model.device = torch.device("cuda")
    calls = []
    for name in ("enable_model_cpu_offload", "enable_sequential_cpu_offload", "to", "remove_all_hooks"):
        monkeypatch.setattr(model.pipe, name, lambda *a, _name=name, **k: calls.append((_name, a, k)))
    for mode in ("model", "sequential", "none"):
        assert model.set_offload(mode)["offload"] == mode
    cuda = torch.device("cuda")
    assert calls == [("remove_all_hooks", (), {}), ("enable_model_cpu_offload", (), {"device": cuda}),
                     ("remove_all_hooks", (), {}), ("enable_sequential_cpu_offload", (), {"device": cuda}),
                     ("remove_all_hooks", (), {}), ("to", (cuda,), {})]
    calls.clear()
    model.set_offload("none")  # already so: nothing to do
    assert calls == []


def test_vae_tiling_decodes_in_tiles_and_changes_no_small_video(session):
    model = StudioModel.load("tiny")
    prior(model, session)
    before = model.animate(session, "it rolls", 50, 1.0, 3, seed=4, **FAST).videos[0]
    assert model.set_vae_tiling(True)["vae_tiling"] is True and model.pipe.vae.use_tiling
    after = model.animate(session, "it rolls", 50, 1.0, 3, seed=4, **FAST).videos[0]
    assert np.array_equal(video_io.read_mp4_frames(before.mp4_path), video_io.read_mp4_frames(after.mp4_path))
    assert model.set_vae_tiling(False)["vae_tiling"] is False and not model.pipe.vae.use_tiling
    with pytest.raises(StudioError, match="VAE tiling must be true or false"):
        model.set_vae_tiling("yes")


def test_defaults_and_examples_are_what_the_model_recommends(recommending_model, session):
    m = recommending_model
    assert (m.motion_factor_range, m.default_motion_factor, m.default_appearance_factor) == ((10.0, 60.0), 30.0, 0.4)
    assert (m.default_guidance, m.default_steps, m.fps) == (4.5, 3, 12.0)
    assert m.example_prompts == ["a kite over a hill", "a boat on a lake"]
    assert m.motion_examples == [["a kite flies left\na kite flies up", 40.0], ["a kite hangs still", 10.0]]
    assert m.motion_example_labels == ["flies left, then up (γm 40)", "hangs still (γm 10)"]

    # Left unset, every value of a job is the recommended one, and the videos play at the recommended rate.
    made = m.generate_prior(session, "a kite over a hill", seed=1).priors[0]
    assert (made.settings["num_inference_steps"], made.settings["guidance_scale"]) == (3, 4.5)
    video = m.animate(session, "a kite flies left", seed=1).videos[0]
    settings = video_io.read_mp4_metadata(video.mp4_path)
    assert {k: settings[k] for k in ("motion_factor", "appearance_factor", "guidance_scale", "num_inference_steps",
                                     "num_frames", "fps")} == {
        "motion_factor": 30.0, "appearance_factor": 0.4, "guidance_scale": 4.5, "num_inference_steps": 3,
        "num_frames": 8, "fps": 12.0}
    with av.open(str(video.mp4_path)) as container:
        assert container.streams.video[0].average_rate == 12


def test_a_model_that_declares_nothing_gets_the_paper_defaults_and_no_examples(model):
    assert (model.default_guidance, model.default_appearance_factor, model.default_steps, model.fps) == (
        12.0, 1.0, 50, 8.0)
    assert model.default_motion_factor == 50.0  # the middle of the tiny model's trained range, 0-100
    assert model.example_prompts == [] and model.motion_examples == [] and model.motion_example_labels == []


def test_the_bundled_demo_model_runs_with_its_recorded_settings(shapes_model, session):
    # `python app.py` offline: the shapes-world model committed under assets/.
    assert not shapes_model.is_tiny
    assert (shapes_model.num_frames, shapes_model.motion_factor_range) == (8, (0.0, 20.0))
    made = shapes_model.generate_prior(session, "a red circle on a cyan background", seed=0, **FAST).priors[0]
    assert tuple(made.latents.shape) == (1, 4, 16, 16)
    result = shapes_model.animate(session, "a red circle moves right on a cyan background", seed=0,
                                  **{**FAST, "guidance": None})
    assert video_io.read_mp4_frames(result.videos[0].mp4_path).shape == (8, 64, 64, 3)
    # the factors and guidance left unset are the ones its folder records, measured on it
    settings = result.videos[0].settings
    assert (settings["motion_factor"], settings["appearance_factor"], settings["guidance_scale"]) == (10.0, 0.2, 3.0)
    # the model is named by its folder, never by where the server keeps it (the MP4 carries the same settings)
    assert settings["model"] == made.settings["model"] == shapes_model.describe()["model"] == "shapes-model"
    assert video_io.read_mp4_metadata(result.videos[0].mp4_path)["model"] == "shapes-model"
    # its examples are captions of its own world, and step 2's animate the first example prior inside its range
    for example in shapes_model.example_prompts:
        parse_caption(example)  # raises for a caption outside the world (a background it never saw, say)
    first = parse_caption(shapes_model.example_prompts[0])
    assert len(shapes_model.motion_examples) == len(shapes_model.motion_example_labels) == 5
    for prompts, motion_factor in shapes_model.motion_examples:
        for line in prompts.splitlines():
            caption = parse_caption(line)
            assert caption["motion"] and all(caption[k] == first[k] for k in ("shapes", "colours", "background"))
        assert 0 <= motion_factor <= 20


def test_a_copy_of_the_demo_model_is_the_same_model(demo_model_dir, shapes_model, tmp_path):
    """Nothing depends on where the folder is: its settings travel with it. Loading it warns about nothing."""
    copy = shutil.copytree(demo_model_dir, tmp_path / "elsewhere")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        moved = StudioModel.load(str(copy))
    assert (moved.default_guidance, moved.default_appearance_factor, moved.default_motion_factor) == (3.0, 0.2, 10.0)
    assert moved.motion_example_labels[0] == "moves left quickly | moves right quickly (γm 17)"
    assert moved.settings == shapes_model.settings


def test_the_model_module_does_not_import_the_shapes_world():
    repo = Path(__file__).resolve().parents[2]
    code = "import sys, studio.model; print([m for m in sys.modules if m.startswith('higen_core.shapes')])"
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr


def test_load_another_model_and_vgen_conversion_is_cached(tmp_path, monkeypatch):
    other = StudioModel.load("tiny", cache_dir=tmp_path / "cache",
                             sources=ModelSources((tmp_path,), frozenset({"owner/sd-2-1-base"})))
    saved = tmp_path / "saved"
    other.pipe.save_pretrained(saved)
    conversions = []

    def fake_convert(checkpoint, base, out):
        conversions.append((checkpoint, base))
        other.pipe.save_pretrained(out)

    monkeypatch.setattr("higen_core.convert.convert_to_pipeline", fake_convert)
    checkpoint = tmp_path / "higen.pth"
    checkpoint.write_bytes(b"weights")
    first = convert_vgen_cached(str(checkpoint), "owner/sd-2-1-base", tmp_path / "cache")
    second = convert_vgen_cached(str(checkpoint), "owner/sd-2-1-base", tmp_path / "cache")
    assert first == second and len(conversions) == 1 and not list((tmp_path / "cache").glob("*.partial-*"))

    info = other.load_other(vgen_checkpoint=str(checkpoint), base="owner/sd-2-1-base")
    assert info["model"] == first.name and info["tiny"] is False and len(conversions) == 1
    assert other.load_other(source=str(saved))["model"] == saved.name
    with pytest.raises(StudioError, match="Give a pipeline folder"):
        other.load_other()
    assert other.load_other(source="tiny")["tiny"] is True


def test_a_lora_from_an_allowed_folder_changes_the_videos_and_is_recorded(tmp_path):
    from higen_core import HiGenPipeline
    from higen_core.testing import add_random_lora_, tiny_pipeline
    from studio.access import REFUSED
    from studio.sessions import SessionStore

    allowed = tmp_path / "allowed"
    HiGenPipeline.save_lora_weights(allowed / "lora", unet_lora_layers=add_random_lora_(tiny_pipeline(), std=0.2))
    model = StudioModel(tiny_pipeline(), "tiny", is_tiny=True, sources=ModelSources((allowed,)))
    store = SessionStore(tmp_path / "sessions")
    session = store.ensure(None)
    prior(model, session)

    def video():
        return model.animate(session, "it rolls", 50, 1.0, 2, seed=1, **FAST).videos[0]

    base = video()
    info = model.apply_lora(str(allowed / "lora"), 0.5)
    assert info["lora"] == {"lora": "allowed/lora", "lora_scale": 0.5}  # no server path on the page or in files
    with_lora = video()
    assert (with_lora.settings["lora"], with_lora.settings["lora_scale"]) == ("allowed/lora", 0.5)
    frames = lambda v: video_io.read_mp4_frames(v.mp4_path).astype(int)
    assert np.abs(frames(with_lora) - frames(base)).max() > 0
    assert model.apply_lora("", 1.0)["lora"] is None
    again = video()
    assert np.array_equal(frames(again), frames(base)) and "lora" not in again.settings
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(allowed / "lora", elsewhere)
    for source in (str(elsewhere), str(allowed / "missing"), "../../etc"):
        with pytest.raises(StudioError, match=re.escape(REFUSED)):
            model.apply_lora(source, 1.0)
    store.close()


def test_a_duration_in_seconds_is_the_frames_that_play_that_long(model):
    # The tiny model: 8 fps, trained on 8 frames, at most 8 (its appearance width).
    assert model.duration_range == (0.25, 1.0, 0.125) and model.default_duration == 1.0
    assert [model.frames_for_duration(s) for s in (0.25, 0.75, 0.8, 1.0, None)] == [2, 6, 6, 8, 8]
    with pytest.raises(StudioError, match=r"^Duration \(seconds\) must be a number from 0.25 to 1; got 2.$"):
        model.frames_for_duration(2)


def test_videos_can_be_smoother_larger_and_of_another_quality(model, session):
    prior(model, session)
    plain = model.animate(session, "it rolls", 50, 1.0, 4, seed=3, **FAST).videos[0]
    made = model.animate(session, "it rolls", 50, 1.0, 4, seed=3, interpolation=2, upscale=2, quality=28,
                         **FAST).videos[0]
    assert plain.settings["output"] == {"interpolation": 1, "upscale": 1, "quality": 17, "fps": 8.0}
    assert made.settings["output"] == {"interpolation": 2, "upscale": 2, "quality": 28, "fps": 16.0}
    assert made.settings["num_frames"] == 4 and made.settings["fps"] == 8.0  # what the model made
    frames = video_io.read_mp4_frames(made.mp4_path)
    assert frames.shape == (8, 32, 32, 3)  # twice the frames of the 16x16 video, twice as large
    with av.open(str(made.mp4_path)) as container:
        assert container.streams.video[0].average_rate == 16
    with pytest.raises(StudioError, match="^Frame interpolation must be a whole number from 1 to 4; got 8.$"):
        model.animate(session, "it rolls", interpolation=8, **FAST)
    with pytest.raises(StudioError, match=r"^Quality \(CRF\) must be a whole number from 0 to 51"):
        model.animate(session, "it rolls", quality=-1, **FAST)
    # The factors as Gradio's API page lists them (text), and only those.
    assert model.check_output_request("2", "4")["fps"] == 16.0
    with pytest.raises(StudioError, match="^Upscaling must be a whole number from 1 to 4; got '2.0'.$"):
        model.check_output_request(1, "2.0")


def test_models_are_named_without_the_servers_paths_and_a_runs_pipeline_with_its_run(tmp_path):
    (tmp_path / "runs" / "kites" / "final").mkdir(parents=True)
    (tmp_path / "runs" / "kites" / "lora").mkdir()
    assert shown_name(str(tmp_path / "runs" / "kites" / "final")) == "kites/final"
    assert shown_name(str(tmp_path / "runs" / "kites")) == "kites"
    assert shown_name(str(tmp_path / "runs" / "kites" / "lora"), parts=2) == "kites/lora"
    assert shown_name("owner/model") == "owner/model" and shown_name("tiny") == "tiny"
