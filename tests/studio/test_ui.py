"""The UI's pure helpers, its wiring (elem_ids, endpoints, queue) and the rule that the UI imports no torch."""

import csv
import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest

from higen_core import HiGenPipeline, video_io
from higen_core.testing import tiny_components
from studio import JobStopped
from studio.access import ModelSources
from studio.model import StudioModel
from studio.sessions import PriorRecord
from studio.ui import (NOTHING_TO_STOP, STOPPED, UI_HEADROOM, Handlers, create_demo, default_motion_prompts,
                       make_cached_examples, queue_full_message, record_id_from_path)

ELEM_IDS = ["prior-prompt", "prior-negative", "prior-seed", "prior-generate", "prior-gallery", "prior-upload",
            "animate-duration", "output-interpolation", "output-upscale", "output-quality", "prior-framing",
            "prior-crop-position", "prior-reframe",
            "motion-prompts", "motion-factor", "appearance-factor", "animate", "stop", "videos", "history"]


def test_queue_full_message():
    assert queue_full_message(3, 16) is None and queue_full_message(99, None) is None
    assert "busy: 16 jobs are already waiting" in queue_full_message(16, 16)


def test_record_ids_survive_gradio_cache_paths():
    assert record_id_from_path("/tmp/gradio/abc/prior-0123abcd.png") == "0123abcd"
    assert record_id_from_path(("/tmp/gradio/x/video-99.gif", "caption")[0]) == "99"
    assert record_id_from_path("/tmp/upload/cat.png") is None


def test_motion_prompts_follow_the_prior_until_edited():
    old = PriorRecord("a", None, {"prompt": "a cat"}, None)
    new = PriorRecord("b", None, {"prompt": "a dog"}, None)
    assert default_motion_prompts("", None, new) == "a dog"
    assert default_motion_prompts("a cat", old, new) == "a dog"
    assert default_motion_prompts("a cat walks\na cat sits", old, new) == "a cat walks\na cat sits"


def test_wiring(model, store):
    demo = create_demo(model, store, queue_size=5)
    ids = {block.elem_id for block in demo.blocks.values()}
    assert set(ELEM_IDS) <= ids
    banner = block(demo, "model-banner")
    assert banner.visible and "untrained tiny model" in banner.value
    gpu = [f for f in demo.fns.values() if f.concurrency_id == "gpu"]
    assert {f.api_name for f in gpu} >= {"generate_prior", "animate", "use_image"}
    assert all(f.concurrency_limit == 1 for f in gpu)
    assert demo._queue.max_size == 5 + UI_HEADROOM  # the studio itself refuses GPU jobs past 5


def block(demo, elem_id):
    return next(b for b in demo.blocks.values() if b.elem_id == elem_id)


def starting_values(demo) -> dict:
    names = ("motion-factor", "appearance-factor", "prior-guidance", "animate-guidance", "prior-steps",
             "animate-steps")
    return {name: block(demo, name).value for name in names}


def test_controls_start_at_what_the_model_recommends(recommending_model, store):
    demo = create_demo(recommending_model, store)
    slider = block(demo, "motion-factor")
    assert (slider.minimum, slider.maximum) == (10, 60)
    assert starting_values(demo) == {"motion-factor": 30.0, "appearance-factor": 0.4, "prior-guidance": 4.5,
                                     "animate-guidance": 4.5, "prior-steps": 3, "animate-steps": 3}
    assert prompt_example_rows(demo) == [["a kite over a hill"], ["a boat on a lake"]]
    assert block(demo, "prior-prompt").placeholder == "a kite over a hill"
    # step 2's examples fill the motion prompts and the γm that goes with them, each shown by its label
    assert motion_example_rows(demo) == [["a kite flies left\na kite flies up", 40.0], ["a kite hangs still", 10.0]]
    assert motion_examples_dataset(demo).sample_labels == ["flies left, then up (γm 40)", "hangs still (γm 10)"]


def test_a_model_that_declares_no_examples_shows_none(model, store):
    demo = create_demo(model, store)
    assert prompt_example_rows(demo) is None and motion_example_rows(demo) is None
    slider = block(demo, "motion-factor")
    assert (slider.minimum, slider.maximum) == (0, 100)  # the tiny model's own trained range
    assert starting_values(demo) == {"motion-factor": 50.0, "appearance-factor": 1.0, "prior-guidance": 12.0,
                                     "animate-guidance": 12.0, "prior-steps": 50, "animate-steps": 50}


def test_the_bundled_demo_model_shows_its_recorded_settings(shapes_model, store):
    demo = create_demo(shapes_model, store)
    assert starting_values(demo) == {"motion-factor": 10.0, "appearance-factor": 0.2, "prior-guidance": 3.0,
                                     "animate-guidance": 3.0, "prior-steps": 10, "animate-steps": 10}
    assert len(prompt_example_rows(demo)) == 3
    labels = motion_examples_dataset(demo).sample_labels
    assert len(labels) == 5 and labels[0] == "moves left quickly | moves right quickly (γm 17)"


def test_loading_another_model_moves_the_controls_to_its_recommendations(recommending_model, store, tmp_path):
    folder = tmp_path / "recommending"
    recommending_model.pipe.save_pretrained(folder)
    model = StudioModel.load("tiny", sources=ModelSources((tmp_path,)))
    handlers = Handlers(model, store, demo=None, queue_size=None)
    info, banner, motion, duration, appearance, *guidance_and_steps = handlers.load_model(str(folder), "", "")
    assert "recommending" in info and banner.visible is False
    assert (motion.minimum, motion.maximum, motion.value) == (10.0, 60.0, 30.0)
    # Its 8 frames at its 12 fps.
    assert (duration.value, duration.maximum, duration.step, appearance.value) == (8 / 12, 8 / 12, 1 / 12, 0.4)
    assert duration.info == "12 fps, at most 8 frames."
    assert [update.value for update in guidance_and_steps] == [4.5, 4.5, 3, 3]
    # A page opened (or reloaded) now shows the model loaded, not the one the page was built with.
    *_, info, banner = handlers.restore(None, None, SimpleNamespace(session_hash="later"))
    restored = handlers.restore(None, None, SimpleNamespace(session_hash="later-2"))
    motion = next(v for v in restored if isinstance(v, gr.Slider) and v.maximum == 60.0)
    assert "recommending" in info and banner.visible is False and (motion.minimum, motion.value) == (10.0, 30.0)


def examples_dataset(demo, elem_ids: list[str]):
    """The examples whose inputs are the components `elem_ids`, if there are some."""
    for dataset in (b for b in demo.blocks.values() if type(b).__name__ == "Dataset"):
        if [c.elem_id for c in dataset._components] == elem_ids:
            return dataset
    return None


def motion_examples_dataset(demo):
    return examples_dataset(demo, ["motion-prompts", "motion-factor"])


def motion_example_rows(demo) -> list | None:
    dataset = motion_examples_dataset(demo)
    return None if dataset is None else [list(row) for row in dataset.samples]


def prompt_example_rows(demo) -> list | None:
    dataset = examples_dataset(demo, ["prior-prompt"])
    return None if dataset is None else [list(row) for row in dataset.samples]


def test_the_train_tab_is_built_only_when_asked(model, store, tmp_path):
    from studio.train_tab import TrainingWorkspace

    plain = create_demo(model, store)
    assert not any(b.elem_id == "train-start" for b in plain.blocks.values())
    demo = create_demo(model, store, training=TrainingWorkspace(tmp_path / "ws"))
    command = next(b for b in demo.blocks.values() if b.elem_id == "train-command")
    assert command.value.split()[1:4] == ["-m", "higen_core.train", f"--output-dir={tmp_path}/ws/runs/studio"]


def run_python(code: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter, with the repository importable."""
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    return subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True)


def test_the_ui_imports_no_torch():
    result = run_python("import sys, studio.ui, studio.sessions; print('torch' in sys.modules)")
    assert (result.returncode, result.stdout.strip()) == (0, "False"), result.stderr


def test_the_train_tab_imports_without_the_ui():
    """Either module imports first: the train tab takes what it shares with the UI from studio.events."""
    result = run_python("import sys, studio.train_tab; print('studio.ui' in sys.modules)")
    assert (result.returncode, result.stdout.strip()) == (0, "False"), result.stderr
    result = run_python("import studio.ui, studio.train_tab; print(studio.ui.build_train_tab is "
                        "studio.train_tab.build_train_tab)")
    assert (result.returncode, result.stdout.strip()) == (0, "True"), result.stderr


def cached_examples(demo) -> int:
    return sum(f.name == "load_example_output" for f in demo.fns.values())


def test_examples_are_cached_lazily_and_on_a_space_models_cannot_be_loaded_by_path(recommending_model, store, capsys):
    local = create_demo(recommending_model, store)
    assert cached_examples(local) == 2  # both steps', locally too: a second click is instant
    demo = create_demo(recommending_model, store, on_spaces=True, allow_model_loading=False)
    assert cached_examples(demo) == 2
    out = capsys.readouterr().out
    assert "at first use" in out and str(store.root / "examples") in out  # lazily, and kept in this server's store
    ids = {b.elem_id for b in demo.blocks.values()}
    assert not ids & {"model-loading", "model-source", "model-vgen", "model-base", "model-load"}  # absent
    assert {"load_model", "toggle_offload"}.isdisjoint(f.name for f in demo.fns.values())


def test_a_cached_example_is_made_with_the_recommended_settings(recommending_model, store):
    handlers = Handlers(recommending_model, store, demo=None, queue_size=None,
                        examples_session_id=store.ensure(None).id)
    gallery = handlers.example_prior("a kite over a hill")
    assert len(gallery) == recommending_model.limits["max_candidates"]
    made = store.get(handlers.examples_session_id).current_prior
    assert (made.settings["num_inference_steps"], made.settings["guidance_scale"]) == (3, 4.5)


def test_a_cached_motion_example_animates_the_first_example_prior(recommending_model, store):
    handlers = Handlers(recommending_model, store, demo=None, queue_size=None,
                        examples_session_id=store.ensure(None).id)
    videos = handlers.example_videos("a kite flies left\na kite flies up", 40.0)
    assert [label.split(" · ")[:3] for _, label in videos] == [["“a kite flies left”", "γm 40", "γa 0.4"],
                                                             ["“a kite flies up”", "γm 40", "γa 0.4"]]
    settings = video_io.read_mp4_metadata(videos[0][0])
    assert (settings["prior"]["prompt"], settings["prior"]["seed"], settings["seed"]) == ("a kite over a hill", 0, 0)
    assert (settings["num_inference_steps"], settings["guidance_scale"]) == (3, 4.5)  # the model's recommendations
    # The examples' own session makes them: no visitor's history or current prior changes.
    made = store.get(handlers.examples_session_id).last_videos
    assert [video.id for video in made] == [record_id_from_path(path) for path, _ in videos]
    # Every motion example animates that one prior, made once.
    handlers.example_videos("a kite hangs still", 10.0)
    examples_session = store.get(handlers.examples_session_id)
    assert len(examples_session.priors) == 1
    assert {v.settings["prior"]["id"] for v in examples_session.history if hasattr(v, "prior_id")} == \
        set(examples_session.priors)
    # What the page does not show is not made: the endpoint is public, as every cached example's is.
    with pytest.raises(gr.Error, match="Only the examples shown"):
        handlers.example_videos("a kite flies left", 40.0)
    with pytest.raises(gr.Error, match="Only the examples shown"):
        handlers.example_videos("a kite hangs still", 11.0)


def test_every_cached_example_can_be_made_ahead_of_the_first_click(recommending_model, store):
    def rows_made() -> list[int]:
        return sorted(len(list(csv.reader(path.open(encoding="utf-8"))))
                      for path in (store.root / "examples").glob("*/log.csv"))

    demo = create_demo(recommending_model, store)
    make_cached_examples(demo).join(timeout=300)
    # Both steps' examples (2 prompts, 2 motion examples), each made once: a header and a row each.
    assert rows_made() == [3, 3]
    for examples in demo.cached_examples:
        assert [len(examples.load_from_cache(i)) for i in range(2)] == [1, 1]
    assert rows_made() == [3, 3]  # a click now reads the cache: nothing is made again


def test_motion_examples_without_an_example_prompt_only_fill_the_inputs(recommending_model, store):
    settings = dataclasses.replace(recommending_model.settings, example_prompts=())
    model = StudioModel(HiGenPipeline(**tiny_components(), settings=settings), "no prior example")
    demo = create_demo(model, store)
    assert cached_examples(demo) == 0 and motion_example_rows(demo) is not None
    assert "motion-example-videos" not in {b.elem_id for b in demo.blocks.values()}


def test_outputs_look_like_outputs(model, store):
    demo = create_demo(model, store)
    for elem_id in ("prior-gallery", "history"):
        assert block(demo, elem_id).interactive is False  # no "Drop Media Here", no upload or clear button
    assert "middle frame" in block(demo, "prior-note").value


def test_stop_is_a_calm_public_endpoint(model, store):
    demo = create_demo(model, store)
    (stop,) = [fn for fn in demo.fns.values() if fn.api_name == "stop"]
    # Queued, so that its message reaches the page; never behind a job (the "ui" id has no limit).
    assert stop.queue is not False and stop.concurrency_id == "ui" and stop.api_visibility == "public"


def test_stop_says_what_it_did(model, store, capsys):
    handlers = Handlers(model, store, demo=None, queue_size=None)
    session = store.ensure(None)
    handlers.request_stop(session.id)
    assert capsys.readouterr().out.strip() == NOTHING_TO_STOP and not session.stop.is_set()
    session.busy = True
    handlers.request_stop(session.id)
    assert capsys.readouterr().out.strip() == STOPPED and session.stop.is_set() and not session.busy
    session.stop.clear()


def test_a_stopped_job_changes_nothing_and_raises_nothing(model, store, monkeypatch):
    handlers = Handlers(model, store, demo=None, queue_size=None)
    session = store.ensure(None)

    def stopped(*args, **kwargs):
        raise JobStopped()

    monkeypatch.setattr(model, "generate_prior", stopped)
    assert handlers.generate_prior(session.id, "a ball", "", 1, False, 1, 1.0, 1, "") == gr.skip()
    assert not session.busy


def test_a_refreshed_page_gets_its_last_values_back(model, store):
    handlers = Handlers(model, store, demo=None, queue_size=None)
    sid, *_ = handlers.generate_prior(None, "a red kite", "blurry", 7, False, 2, 1.5, 2, "")
    # 3 frames at 8 fps, interpolated 2×, upscaled 3×, CRF 25.
    handlers.run_animate(sid, "it flies left\nit dives", 40, 0.3, 0.375, 2, 2.5, 9, False, 2, 3, 25)
    values = handlers.restore(sid, None, SimpleNamespace(session_hash="page-2"))
    assert values[0] == sid
    # The seeds were fixed: a reopened page keeps "Randomize seed" unticked, so the next run reuses them; the Output
    # panel's choices come back too.
    assert [plain(v) for v in values[-20:-2]] == ["a red kite", "blurry", 7, 2, 2, 1.5, False,
                                                  "it flies left\nit dives", 40.0, 0.3, 0.375, 2, 2.5, 9, False,
                                                  2, 3, 25]
    # A new visitor gets the running model's recommendations; what the session has no value for is left as it is.
    fresh = [plain(v) for v in handlers.restore(None, None, SimpleNamespace(session_hash="page-3"))[-20:-2]]
    assert fresh == [gr.skip()] * 4 + [50, 12.0, gr.skip()] + [gr.skip(), 50.0, 1.0, 1.0, 50, 12.0] + \
        [gr.skip()] * 5
    handlers.run_animate(sid, "it flies left", 40, 0.3, 0.375, 2, 2.5, 9, True)
    assert handlers.restore(sid, None, SimpleNamespace(session_hash="page-4"))[-6] is True

    # What the browser kept (typed, not run yet) comes back instead; anything else it sends is ignored.
    kept = ["a green kite", "", 3, 1, 2, 1.5, False, "it lands", 45, 0.5, 0.25, 2, 2.5, 4, False, 1, 1, 17]
    assert [plain(v) for v in handlers.restore(sid, kept, SimpleNamespace(session_hash="page-5"))[-20:-2]] == kept
    for bad in (kept[:-1], kept[:-1] + [{"x": 1}], kept[:-1] + ["x" * 10_000], "not a list"):
        values = handlers.restore(sid, bad, SimpleNamespace(session_hash="page-6"))[-20:-2]
        assert plain(values[0]) == "a red kite" and plain(values[7]) == "it flies left"


def plain(value):
    """A control's update as the value it sets (gr.skip() for none)."""
    return value.value if isinstance(value, gr.components.Component) else value


def test_each_page_shows_a_running_animations_newest_preview_once(model, store):
    handlers = Handlers(model, store, demo=None, queue_size=None)
    session = store.ensure(None)
    assert handlers.show_preview(session.id, None) == (gr.skip(), gr.skip())  # nothing running
    assert handlers.show_preview(None, None) == (gr.skip(), gr.skip())
    session.preview_folder.mkdir()
    for step in (2, 4):
        video_io.export_mp4(np.zeros((3, 8, 8, 3)), session.preview_folder / f"preview-{step:04d}-of-0010.mp4")
    video, shown = handlers.show_preview(session.id, None)
    assert shown.endswith("preview-0004-of-0010.mp4") and video.value["orig_name"] == "preview-0004-of-0010.mp4"
    assert video.label == "Preview · step 4 of 10 (colours approximate)"
    assert handlers.show_preview(session.id, shown) == (gr.skip(), gr.skip())  # already on this page


def test_shortcuts_are_shown_and_work_for_both_steps(model, store):
    demo = create_demo(model, store)
    by_id = {b.elem_id: b for b in demo.blocks.values() if b.elem_id}

    def triggers(name):
        fn = next(f for f in demo.fns.values() if f.name == name)
        return {(demo.blocks[target].elem_id, event) for target, event in fn.targets}

    assert ("prior-prompt", "submit") in triggers("check_prior")
    assert {("animate", "click"), ("motion-prompts", "submit")} <= triggers("check_animate")
    assert by_id["prior-prompt"].info == "Shift+Enter: Generate prior."
    assert by_id["motion-prompts"].info == "Enter: a new line. Shift+Enter: Animate."
    assert "duplicate-space" not in by_id  # only a Space offers to duplicate itself


def test_a_space_offers_to_duplicate_itself(model, store):
    demo = create_demo(model, store, on_spaces=True)
    assert any(b.elem_id == "duplicate-space" and type(b).__name__ == "DuplicateButton" for b in demo.blocks.values())


def test_the_last_two_videos_clicked_in_the_history_play_side_by_side(model, store):
    handlers = Handlers(model, store, demo=None, queue_size=None)
    sid, *_ = handlers.generate_prior(None, "a red kite", "", 7, False, 2, 1.5, 1, "")
    handlers.run_animate(sid, "it flies left\nit dives", 40, 0.3, 0.25, 2, 2.5, 9, False)
    history = [(str(path), caption) for path, caption in handlers.show_history(sid)]  # newest first: dives, left, prior

    def click(index, selected):
        return handlers.select_history(sid, history, selected, SimpleNamespace(index=index))

    with pytest.raises(gr.Error, match="Click two videos of the history"):
        handlers.compare_videos(sid, None, None)
    first, _, previous = click(1, None)
    assert previous is None
    second, settings, previous = click(0, first)
    assert previous == first and settings["motion_prompt"] == "it dives"
    row, left, right = handlers.compare_videos(sid, previous, second)
    assert row.visible and "it flies left" in left.label and "it dives" in right.label
    prior_id, _, previous = click(2, second)  # a prior is no video to compare
    with pytest.raises(gr.Error, match="Click two videos"):
        handlers.compare_videos(sid, previous, prior_id)


def test_queued_jobs_run_one_after_another_and_a_waiting_one_can_be_cancelled(model, store):
    import time

    handlers = Handlers(model, store, demo=None, queue_size=None)
    sid, *_ = handlers.generate_prior(None, "a red kite", "", 7, False, 2, 1.5, 1, "")
    first_prior = store.get(sid).current_prior
    with model._lock:  # the GPU is busy: the jobs wait in line
        _, table, _ = handlers.queue_animate(sid, "it flies left", 40, 0.3, 0.25, 2, 2.5, 9, False)
        _, table, _ = handlers.queue_prior(sid, "a blue kite", "", 3, False, 2, 1.5, 2)
        _, table, shown = handlers.queue_animate(sid, "it dives\nit loops", 40, 0.3, 0.25, 2, 2.5, 9, False)
        assert shown.open  # the queue's panel opens to show the job
        deadline = time.time() + 10
        while handlers.queue_table(sid)[0][2] == "waiting" and time.time() < deadline:
            time.sleep(0.01)  # the worker takes the first job (and waits for the GPU)
        table = handlers.queue_table(sid)
        numbers = [row[0] for row in table]
        # An animation names its prior: the one current when it was added (the queued prior job is not made yet).
        assert [row[1:3] for row in table] == [
            ["animate “it flies left” · γm 40 · γa 0.3 · prior “a red kite”, seed 7", "running"],
            ["prior “a blue kite” ×2", "waiting"],
            ["animate “it dives” +1 · γm 40 · γa 0.3 · prior “a red kite”, seed 7", "waiting"]]
        assert handlers.cancel_job(sid, numbers[2])[2][2] == "cancelled"
        with pytest.raises(gr.Error, match=f"Job #{numbers[0]} is running: only a waiting job can be cancelled"):
            handlers.cancel_job(sid, numbers[0])
    deadline = time.time() + 60
    while any(row[2] in ("waiting", "running") for row in handlers.queue_table(sid)) and time.time() < deadline:
        time.sleep(0.1)
    table = handlers.queue_table(sid)
    assert [row[2] for row in table] == ["done", "done", "cancelled"]
    assert table[0][3].startswith("1 video(s), seed 9") and table[1][3] == "2 candidate(s), seed 3"
    session = store.get(sid)
    # The animation used the prior current when it was added, though the queued prior job made others current since.
    assert session.last_videos[0].prior_id == first_prior.id and session.current_prior is not first_prior
    updates = handlers.show_queue(sid, 0)
    assert updates[1] == 2 and updates[-2] and updates[-1].label.startswith("Current prior · seed 3")
    assert handlers.show_queue(sid, 2)[1] == gr.skip()  # nothing new since
