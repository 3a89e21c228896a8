# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""HiGen Studio's Gradio UI.

`create_demo(model, store)` builds the Blocks app around a model object (studio.model.StudioModel, or anything with
the same methods) and a SessionStore. This file imports no torch: every computation is a call on `model`, and every
default the controls start at is what the model recommends (its `pipe.settings`).

The app is built in three parts: one builder per panel, each returning its components (studio.panels); `Handlers`,
whose methods adapt component values to the model's methods; and `wire_events`, the one place where components meet
handlers.
Every GPU event shares one concurrency id with a limit of 1 (studio.events.GPU_EVENT), so spatial reasoning,
temporal reasoning, image encoding and model loading never overlap, whoever asked for them.

The page checks a job's values in an event of its own, without outputs, before the job joins the queue: a mistake
shows one message and marks no field. The named endpoints take their values raw (`preprocess=False`) so that the
model's checks, not Gradio's conversions, answer any JSON an API client sends.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import gradio as gr

from . import StudioError, inputs
from .events import GPU_EVENT, QUICK_EVENT, UI_EVENT, StudioBlocks, log, session_endpoint, user_errors
from .jobs import JobQueue
from .panels import (AnimatePanel, HistoryPanel, ModelPanel, PriorPanel, QueuePanel, SessionState, VideoPanel,
                     build_animate_panel, build_header, build_history_panel, build_model_panel, build_prior_panel,
                     build_queue_panel, build_video_panel, duration_info, model_choices, model_markdown)
from .sessions import PriorRecord, Session, SessionStore, VideoRecord
from .train_tab import build_train_tab

SESSION_STORAGE_KEY = "higen-studio-session"
INPUTS_STORAGE_KEY = "higen-studio-inputs"
DEFAULT_QUEUE_SIZE = 16
# Places in Gradio's queue beyond `queue_size`: the studio refuses GPU jobs itself once `queue_size` wait, with a
# clear message, and its message-showing handlers still need to get in to say so.
UI_HEADROOM = 8
# A prior is shown whole in its box whatever its size (the tiny model's are 16 pixels wide).
CSS = "#prior-current img { width: 100%; height: 100%; object-fit: contain; }"
# What app.py passes to launch(): Gradio 6 takes page CSS there.
LAUNCH_OPTIONS = {"css": CSS, "max_file_size": "20mb", "mcp_server": True}
STOPPED = ("Stopped: the job ends after its current step. An animation keeps the videos that step predicts, marked "
           "partial; priors are not kept.")
# After "Send back to inputs": bring the inputs it filled into view (both steps' columns start at the same height).
SCROLL_TO_INPUTS = "() => document.querySelector('#prior-prompt').scrollIntoView({behavior: 'smooth', block: 'start'})"
# How long the page waits, after Stop, for the stopped job to leave and show what it kept (a step takes well under).
STOP_WAIT_S = 30.0
NOTHING_TO_STOP = "Nothing is running: there was nothing to stop."
# Stop goes through the queue, as only queued events bring gr.Info to the page; it never waits behind a job.
STOP_EVENT = {"concurrency_id": "ui", "concurrency_limit": None}


def queue_full_message(waiting: int, max_size: int | None) -> str | None:
    """The error shown instead of joining a full queue; None while there is room."""
    if max_size is None or waiting < max_size:
        return None
    return (f"The studio is busy: {waiting} jobs are already waiting, the most it queues. Please try again in a "
            f"minute.")


def record_id_from_path(path) -> str | None:
    """"prior-<id>.png" / "video-<id>.gif" -> id; the name survives Gradio copying files to its cache."""
    stem = Path(str(path)).stem
    kind, _, record_id = stem.partition("-")
    return record_id if kind in ("prior", "video") and record_id else None


def gallery_path(item) -> str:
    """A Gallery value item is (path, caption); a bare path is accepted too."""
    return item[0] if isinstance(item, (list, tuple)) else item


def candidates_gallery(session: Session) -> list[tuple[str, str]]:
    priors = [session.priors[i] for i in session.candidates if i in session.priors]
    return [(str(p.image_path), f"seed {p.settings['seed']}") for p in priors]


def history_gallery(session: Session) -> list[tuple[str, str]]:
    """Newest first: priors as their picture, videos as their looping GIF."""
    items = []
    for record in reversed(session.history):
        if isinstance(record, VideoRecord):
            s = record.settings
            partial = " · partial" if s.get("partial") else ""
            items.append((str(record.gif_path), f"video · {s['motion_prompt']} · γm {s['motion_factor']:g} · "
                                                f"γa {s['appearance_factor']:g} · seed {s['seed']}{partial}"))
        else:
            s = record.settings
            text = s.get("prompt") or s.get("file", "image")
            seed = f" · seed {s['seed']}" if "seed" in s else ""
            items.append((str(record.image_path), f"prior · {text}{seed}"))
    return items


def keep_inputs(*values) -> list:
    """The page's inputs, for the browser to keep (as the page sends them: checked when they come back)."""
    return list(values)


def kept_inputs_fit(values, count: int) -> bool:
    """Whether `values`, the inputs a browser kept, can go back into the page: `count` plain values (the browser
    is the visitor's; each value is checked again when a job is asked for)."""
    return isinstance(values, list) and len(values) == count and all(
        v is None or isinstance(v, (str, int, float, bool)) for v in values) and all(
        len(v) <= inputs.MAX_MOTION_TEXT_CHARS for v in values if isinstance(v, str))


def prior_source(prior: PriorRecord) -> str:
    """Where a prior came from, in a few words: its seed, or the image it was made from."""
    s = prior.settings
    return f"seed {s['seed']}" if "seed" in s else s.get("file", "your image")


def current_prior_image(session: Session):
    prior = session.current_prior
    if prior is None:
        return gr.Image(value=None, label="Current prior: none yet")
    return gr.Image(value=str(prior.image_path), label=f"Current prior · {prior_source(prior)}")


def motion_text(value) -> str:
    """Step 2's box as a handler of step 1 gets it, checked before the job: it comes back to the page."""
    return inputs.text(value, inputs.MOTION_TEXT, inputs.MAX_MOTION_TEXT_CHARS)


def default_motion_prompts(current_text: str, previous: PriorRecord | None, new: PriorRecord) -> str:
    """The new prior's prompt replaces the motion prompts unless the person has written their own."""
    untouched = current_text.strip() in ("", previous.prompt if previous else "")
    return new.prompt if untouched and new.prompt else current_text


def unknown_words_message(words: list[str]) -> str | None:
    return f"This model does not know: {', '.join(words)}. It runs anyway." if words else None


def restored_inputs(session: Session) -> tuple[list, list]:
    """Step 1's (prompt, negative prompt, seed, candidates, steps, guidance, randomize seed) from the session's
    newest batch of priors and step 2's (motion prompts, γm, γa, duration, steps, guidance, seed, randomize seed,
    interpolation, upscale, quality) from its last videos; gr.skip() for a step the session has not used yet."""
    # A batch's first candidate carries the seed the batch was asked for (candidate k used seed + k).
    made = [p for p in session.priors.values() if p.settings.get("source") == "generated"
            and p.settings.get("candidate") == 0]
    step1 = [gr.skip()] * 7
    if made:
        s = made[-1].settings
        step1 = [s["prompt"], s["negative_prompt"], s["seed"], s["candidates"], s["num_inference_steps"],
                 s["guidance_scale"], session.randomize_seed.get("prior", gr.skip())]
    step2 = [gr.skip()] * 11
    if session.last_videos:
        s = session.last_videos[0].settings
        step2 = ["\n".join(s["batch"]["motion_prompts"]), s["motion_factor"], s["appearance_factor"],
                 s["num_frames"] / s["fps"], s["num_inference_steps"], s["guidance_scale"], s["seed"],
                 session.randomize_seed.get("animate", gr.skip()), s["output"]["interpolation"],
                 s["output"]["upscale"], s["output"]["quality"]]
    return step1, step2


# ----------------------------------------------------------------------------------------------------------------
# Handlers: thin adapters from component values to the model's methods.
class Handlers:
    """The event handlers of one app, over its `model` and `store`. `demo` is read for its queue's length;
    `examples_session_id`: the session that makes the cached examples' priors (on a Space), else None."""

    def __init__(self, model, store: SessionStore, demo: gr.Blocks, queue_size: int | None,
                 examples_session_id: str | None = None):
        self.model = model
        self.store = store
        self.jobs = JobQueue()
        self.demo = demo
        self.queue_size = queue_size
        self.slot_count = model.limits["max_motion_prompts"]
        self.examples_session_id = examples_session_id

    def check_queue(self):
        # Runs before every GPU job from the page: Gradio's own refusal of a full queue does not say why. Gradio has
        # no public reader of its queue's length.
        message = queue_full_message(len(self.demo._queue), self.queue_size)
        if message:
            raise gr.Error(message, title="Busy", print_exception=False)

    @user_errors
    def check_prior(self, sid, prompt, negative_prompt, seed, randomize_seed, steps, guidance, candidates):
        """Step 1's values, checked before the job queues; the session counts as busy from here (Stop says so)."""
        self.model.check_prior_request(prompt, negative_prompt, seed, randomize_seed, steps, guidance, candidates)
        self.check_queue()
        self.store.ensure(sid).busy = True

    def animate_request(self, session: Session, motion_prompts, motion_factor, appearance_factor, duration, steps,
                        guidance, seed, randomize_seed, interpolation, upscale, quality):
        """Step 2's values as the page gives them (a duration in seconds, the Output panel's), checked: the model's
        AnimateRequest, with its seed picked."""
        self.model.check_output_request(interpolation, upscale, quality)
        return self.model.check_animate_request(session, motion_prompts, motion_factor, appearance_factor,
                                                self.model.frames_for_duration(duration), steps, guidance, seed,
                                                randomize_seed)

    @user_errors
    def check_animate(self, sid, motion_prompts, motion_factor, appearance_factor, duration, steps, guidance,
                      seed, randomize_seed, interpolation=1, upscale=1, quality=None):
        session = self.store.ensure(sid)
        self.animate_request(session, motion_prompts, motion_factor, appearance_factor, duration, steps, guidance,
                             seed, randomize_seed, interpolation, upscale, quality)
        self.check_queue()
        session.busy = True

    @user_errors
    def check_upload(self, sid):
        self.check_queue()
        self.store.ensure(sid).busy = True

    @staticmethod
    @contextlib.contextmanager
    def job(session: Session):
        session.busy = session.running = True
        try:
            yield
        finally:
            session.busy = session.running = False

    def warn_unknown_words(self, *texts: str) -> None:
        message = unknown_words_message(self.model.unknown_words(*texts))
        if message:
            gr.Warning(message)

    def slot_updates(self, videos: list[VideoRecord]) -> list:
        updates = []
        for i in range(self.slot_count):
            if i < len(videos):
                v = videos[i]
                updates += [gr.Column(visible=True), gr.Video(value=str(v.mp4_path), label=v.label),
                            gr.File(value=v.files, visible=True)]
            else:
                updates += [gr.Column(visible=i == 0), gr.Video(value=None, label="Videos appear here"),
                            gr.File(value=None, visible=False)]
        return updates

    @user_errors
    def restore(self, browser_id, browser_inputs, request: gr.Request):
        """A page (re)opened: its session's galleries, current prior and last videos, its inputs (as the browser
        kept them, else as its steps last ran), and the model running now (one loaded since the server started has
        other ranges and defaults than the page was built with)."""
        session = self.store.attach(browser_id, request.session_hash)
        step1, step2 = restored_inputs(session)
        if kept_inputs_fit(browser_inputs, len(step1) + len(step2)):
            step1, step2 = list(browser_inputs[:len(step1)]), list(browser_inputs[len(step1):])
        model = self.model
        # Where the session has no value of its own, the model's recommendation (the page was built with the
        # recommendations of the model the server started with).
        places = ((step1, 4, "prior_steps"), (step1, 5, "prior_guidance"), (step2, 1, "motion_factor"),
                  (step2, 2, "appearance_factor"), (step2, 3, "duration"), (step2, 4, "animate_steps"),
                  (step2, 5, "animate_guidance"))
        controls = self.recommended_controls(**{control: values[index] for values, index, control in places
                                                if values[index] != gr.skip()})
        for values, index, control in places:
            values[index] = controls[control]
        return [session.id, session.id, candidates_gallery(session), current_prior_image(session),
                history_gallery(session), *self.slot_updates(session.last_videos), *step1, *step2,
                model_markdown(model.describe()), gr.Markdown(visible=model.is_tiny)]

    def recommended_controls(self, **values) -> dict:
        """The controls that start where the model recommends, as updates to them: its ranges, and its defaults
        unless `values` gives one (by control name)."""
        model = self.model
        low, high = model.motion_factor_range
        shortest, longest, step = model.duration_range
        value = {"motion_factor": model.default_motion_factor, "duration": model.default_duration,
                 "appearance_factor": model.default_appearance_factor, "prior_guidance": model.default_guidance,
                 "animate_guidance": model.default_guidance, "prior_steps": model.default_steps,
                 "animate_steps": model.default_steps, **values}
        return {"motion_factor": gr.Slider(minimum=low, maximum=high, value=value["motion_factor"]),
                "duration": gr.Slider(minimum=shortest, maximum=longest, step=step, value=value["duration"],
                                      info=duration_info(model)),
                **{name: gr.Slider(value=value[name]) for name in ("appearance_factor", "prior_guidance",
                                                                   "animate_guidance", "prior_steps",
                                                                   "animate_steps")}}

    @user_errors
    def release(self, request: gr.Request):
        self.store.detach(request.session_hash)

    @user_errors
    def example_prior(self, prompt_text):
        # Gradio calls this with an example's prompt; a raw call with any other text gets nothing made.
        if prompt_text not in self.model.example_prompts:
            raise StudioError("Only the examples shown are made here.")
        session = self.store.ensure(self.examples_session_id)
        self.model.generate_prior(session, prompt_text, "", 0, False, None, None,
                                  self.model.limits["max_candidates"])
        return candidates_gallery(session)

    @user_errors
    def example_videos(self, motion_prompts, motion_factor):
        """A motion example's videos: the first example prompt's prior (seed 0), which the model's motion examples
        describe, animated with the example's prompts and γm and every other setting the model recommends."""
        if [motion_prompts, motion_factor] not in self.model.motion_examples:
            raise StudioError("Only the examples shown are made here.")
        session = self.store.ensure(self.examples_session_id)
        # One prior for every motion example (they all describe it): the one made before, by another motion example
        # or as a step-1 example's first candidate (seed 0, the same recommended settings), else a new one.
        first = self.model.example_prompts[0]
        prior = next((p for p in session.priors.values() if p.settings.get("source") == "generated"
                      and p.prompt == first and p.settings["seed"] == 0), None)
        if prior is None:
            prior = self.model.generate_prior(session, first).priors[0]
        result = self.model.animate(session, motion_prompts, motion_factor, prior_id=prior.id)
        return [(str(video.mp4_path), video.label) for video in result.videos]

    @session_endpoint
    @user_errors
    def generate_prior(self, sid, prompt, negative_prompt, seed, randomize_seed, steps, guidance, candidates,
                       motion_prompts, progress=gr.Progress()):
        motion_prompts = motion_text(motion_prompts)
        session = self.store.ensure(sid)
        with self.job(session):
            request = self.model.check_prior_request(prompt, negative_prompt, seed, randomize_seed, steps,
                                                     guidance, candidates)
            session.randomize_seed["prior"] = randomize_seed
            self.warn_unknown_words(request.prompt)
            previous = session.current_prior
            batch = self.model.generate_prior(session, prompt, negative_prompt, seed, randomize_seed, steps,
                                              guidance, candidates, progress=progress)
        return (session.id, candidates_gallery(session), batch.seed, current_prior_image(session),
                default_motion_prompts(motion_prompts, previous, batch.priors[0]))

    @user_errors
    def choose_prior(self, sid, gallery_value, prompt_text, motion_value, evt: gr.SelectData):
        motion_prompts = motion_text(motion_value)
        session = self.store.ensure(sid)
        previous = session.current_prior
        prior = self.model.choose_prior(session, gallery_path(gallery_value[evt.index]), prompt=prompt_text)
        return session.id, current_prior_image(session), default_motion_prompts(motion_prompts, previous, prior)

    @session_endpoint
    @user_errors
    def choose_candidate(self, sid, index, motion_prompts=None):
        """Make one of the last "Generate prior" candidates the current prior, as a click on it does.

        Args:
            index: the candidate's place in the gallery, from 0.
            motion_prompts: the motion prompts so far; the chosen prior's prompt replaces them unless they were
                edited.
        """
        motion_prompts = motion_text(motion_prompts)
        session = self.store.ensure(sid)
        index = self.model.candidate_index(session, index)
        previous = session.current_prior
        prior = session.make_current(session.candidates[index])
        return session.id, current_prior_image(session), default_motion_prompts(motion_prompts, previous, prior)

    @session_endpoint
    @user_errors
    def use_image(self, sid, image, motion_prompts, framing="crop", crop_position=0.5):
        """Your own image as the spatial prior.

        Args:
            image: the image file (PNG, JPEG, WebP or BMP).
            motion_prompts: the motion prompts so far; kept unless empty.
            framing: "crop" (fill the model's frame, trimming what sticks out) or "fit" (all of it, black bars).
            crop_position: what a crop keeps, from 0 (the left or top) to 1 (the right or bottom).
        """
        motion_prompts = motion_text(motion_prompts)
        session = self.store.ensure(sid)
        with self.job(session):
            previous = session.current_prior
            prior = self.model.use_image(session, image, framing=framing, position=crop_position)
        return session.id, current_prior_image(session), default_motion_prompts(motion_prompts, previous, prior)

    @session_endpoint
    @user_errors
    def run_animate(self, sid, motion_prompts, motion_factor, appearance_factor, duration, steps, guidance, seed,
                    randomize_seed, interpolation=1, upscale=1, quality=None, progress=gr.Progress()):
        """Step 2 (`duration` in seconds, as many frames as play that long at the model's fps), and the videos'
        post-processing: `interpolation` and `upscale` factors (1 to 4), x264 CRF `quality` (None: the default)."""
        session = self.store.ensure(sid)
        with self.job(session):
            r = self.animate_request(session, motion_prompts, motion_factor, appearance_factor, duration, steps,
                                     guidance, seed, randomize_seed, interpolation, upscale, quality)
            session.randomize_seed["animate"] = randomize_seed
            self.warn_unknown_words(*r.prompts)
            result = self.model.animate(session, r.prompts, r.motion_factor, r.appearance_factor, r.num_frames,
                                        r.steps, r.guidance, r.seed, False, progress=progress,
                                        interpolation=interpolation, upscale=upscale, quality=quality)
        files = [path for video in result.videos for path in video.files]
        return session.id, files, [video.settings for video in result.videos], result.seed

    def videos_and_history(self, session: Session) -> list:
        """The session's last videos in their slots, and its history."""
        return [*self.slot_updates(session.last_videos), history_gallery(session)]

    @user_errors
    def show_videos(self, sid):
        return self.videos_and_history(self.store.ensure(sid))

    @user_errors
    def show_preview(self, sid, shown):
        """A timer's tick: the running animation's newest preview in the first video slot, once each."""
        session = self.store.get(sid) if isinstance(sid, str) else None
        preview = session.latest_preview() if session is not None else None
        if preview is None or preview[0] == shown:
            return gr.skip(), gr.skip()
        path, step, total = preview
        return gr.Video(value=path, label=f"Preview · step {step} of {total} (colours approximate)"), path

    @user_errors
    def text_to_video(self, prompt, motion_prompts, motion_factor, appearance_factor, duration, steps, guidance, seed):
        """Both steps in one call, for scripts and AI agents (MCP) that keep no session between calls: a spatial
        prior for `prompt`, animated by each motion prompt. Returns the videos' MP4, GIF and settings files.

        Args:
            prompt: what the picture shows (step 1).
            motion_prompts: the motions, one per line, up to 4; empty: the prompt itself.
            motion_factor: how much consecutive frames differ (γm), in the model's range.
            appearance_factor: how much the look changes from the first to the last frame (γa), 0 to 1.
            duration: the video's length in seconds.
            steps: denoising steps of each step.
            guidance: classifier-free guidance of each step.
            seed: the noise of both steps.
        """
        session = self.store.ensure(None)  # of its own: nothing carries over to another call
        num_frames = self.model.frames_for_duration(duration)
        self.model.check_prior_request(prompt, "", seed, False, steps, guidance, 1)
        with self.job(session):
            self.model.generate_prior(session, prompt, "", seed, False, steps, guidance, 1)
            result = self.model.animate(session, motion_prompts, motion_factor, appearance_factor, num_frames, steps,
                                        guidance, seed, False)
        return [path for video in result.videos for path in video.files]

    # --- The queue ---------------------------------------------------------------------------------------------
    @user_errors
    def queue_prior(self, sid, prompt, negative_prompt, seed, randomize_seed, steps, guidance, candidates):
        """Step 1 as a queued job: the values checked now (a random seed picked now), run when its turn comes."""
        session = self.store.ensure(sid)
        r = self.model.check_prior_request(prompt, negative_prompt, seed, randomize_seed, steps, guidance, candidates)
        session.randomize_seed["prior"] = randomize_seed

        def run() -> str:
            with self.job(session):
                batch = self.model.generate_prior(session, r.prompt, r.negative_prompt, r.seeds[0], False, r.steps,
                                                  r.guidance, len(r.seeds))
            return f"{len(batch.priors)} candidate(s), seed {batch.seed}"

        return self.enqueue(session, f"prior “{r.prompt}” ×{len(r.seeds)}", run)

    @user_errors
    def queue_animate(self, sid, motion_prompts, motion_factor, appearance_factor, duration, steps, guidance, seed,
                      randomize_seed, interpolation=1, upscale=1, quality=None):
        """Step 2 as a queued job, on the prior current now (later clicks on other priors do not change it)."""
        session = self.store.ensure(sid)
        r = self.animate_request(session, motion_prompts, motion_factor, appearance_factor, duration, steps, guidance,
                                 seed, randomize_seed, interpolation, upscale, quality)
        session.randomize_seed["animate"] = randomize_seed

        def run() -> str:
            with self.job(session):
                result = self.model.animate(session, r.prompts, r.motion_factor, r.appearance_factor, r.num_frames,
                                            r.steps, r.guidance, r.seed, False, interpolation=interpolation,
                                            upscale=upscale, quality=quality, prior_id=r.prior.id)
            return f"{len(result.videos)} video(s), seed {result.seed}" + (" (partial)" if result.partial else "")

        more = f" +{len(r.prompts) - 1}" if len(r.prompts) > 1 else ""
        prior = f"“{r.prior.prompt}”, {prior_source(r.prior)}" if r.prior.prompt else prior_source(r.prior)
        return self.enqueue(session, f"animate “{r.prompts[0]}”{more} · γm {r.motion_factor:g} · "
                                     f"γa {r.appearance_factor:g} · prior {prior}", run)

    def enqueue(self, session: Session, label: str, run):
        """Add a job; the session, its jobs' rows and the queue's panel opened, for the page."""
        job = self.jobs.submit(session.id, label, run)
        gr.Info(f"Job #{job.number} added to the queue.")
        return session.id, self.queue_table(session.id), gr.Accordion(open=True)

    def queue_table(self, sid, jobs=None) -> list[list]:
        """The rows the page shows of this session's jobs (`jobs`: already read)."""
        return [[job.number, job.label, job.state, job.note] for job in (jobs or self.jobs.of_session(sid))]

    @staticmethod
    def pick_job(evt: gr.SelectData):
        """A click on a row of the queue: its job's number, for "Cancel"."""
        return evt.row_value[0] if evt.row_value else gr.skip()

    @user_errors
    def cancel_job(self, sid, number):
        if not isinstance(sid, str):
            raise StudioError("You have no jobs in the queue.")
        job = self.jobs.cancel(sid, number)
        gr.Info(f"Job #{job.number} cancelled.")
        return self.queue_table(sid)

    @user_errors
    def show_queue(self, sid, finished_before):
        """A timer's tick: this session's jobs; when one has ended since, what it made (videos, candidates, history)."""
        session = self.store.get(sid) if isinstance(sid, str) else None
        if session is None:
            return [gr.skip()] * (2 + 3 * self.slot_count + 3)
        jobs = self.jobs.of_session(sid)
        finished = sum(job.state in ("done", "stopped", "failed") for job in jobs)
        table = self.queue_table(sid, jobs)
        if finished == finished_before:
            return [table, gr.skip(), *[gr.skip()] * (3 * self.slot_count + 3)]
        return [table, finished, *self.videos_and_history(session), candidates_gallery(session),
                current_prior_image(session)]

    @user_errors
    def show_history(self, sid):
        return history_gallery(self.store.ensure(sid))

    @user_errors
    def show_after_stop(self, sid):
        """After Stop: once the stopped job has left (within a step), the videos it kept, if it kept any. Stop's
        `cancels` detaches the running event from the page, so its own results would never arrive."""
        session = self.store.get(sid) if isinstance(sid, str) else None
        if session is None:
            return [gr.skip()] * (3 * self.slot_count + 1)
        deadline = time.monotonic() + STOP_WAIT_S
        while session.running and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.videos_and_history(session)

    @session_endpoint
    @user_errors
    def request_stop(self, sid):
        """Stop, with a calm message either way: the job stops at its next step; `cancels` drops waiting ones."""
        session = self.store.get(sid)
        if session is None or not session.busy:
            gr.Info(NOTHING_TO_STOP, title="Stop")
            return
        session.busy = False
        self.model.request_stop(session)
        gr.Info(STOPPED, title="Stopped")

    @user_errors
    def select_history(self, sid, history_value, selected_before, evt: gr.SelectData):
        """The clicked item's id and settings; the item clicked before it becomes the other one to compare."""
        session = self.store.ensure(sid)
        record = session.find(record_id_from_path(gallery_path(history_value[evt.index])))
        if record is None:
            return None, None, selected_before
        return record.id, record.settings, selected_before if selected_before != record.id else gr.skip()

    @user_errors
    def compare_videos(self, sid, first_id, second_id):
        """The two videos clicked last in the history, side by side (the earlier click on the left)."""
        session = self.store.ensure(sid)
        records = [session.find(i) if isinstance(i, str) else None for i in (first_id, second_id)]
        if not all(isinstance(record, VideoRecord) for record in records):
            raise StudioError("Click two videos of the history, one after the other, then Compare.")
        return gr.Row(visible=True), *(gr.Video(value=str(r.mp4_path), label=r.label) for r in records)

    @user_errors
    def send_back(self, sid, record_id):
        """Step 1's six inputs, step 2's eleven (the Output panel's included) and the current prior; the other
        step's inputs are left as they are."""
        if record_id is None:
            raise StudioError("Click an item of the history first.")
        session = self.store.ensure(sid)
        kind, values = self.model.remix(session, record_id)
        skip = gr.skip()
        if kind == "prior":
            step1 = [values["prompt"], values["negative_prompt"], values["seed"], False, values["steps"],
                     values["guidance"]]
            step2 = [skip] * 11
        else:
            step1 = [skip] * 6
            step2 = [values["motion_prompts"], values["motion_factor"], values["appearance_factor"],
                     values["duration"], values["steps"], values["guidance"], values["seed"], False,
                     values["interpolation"], values["upscale"], values["quality"]]
        return [*step1, *step2, current_prior_image(session)]

    @user_errors
    def load_model(self, source_text, checkpoint_text, base_text):
        """The model panel's text and the banner, and every slider that starts at what the new model recommends."""
        info = self.model.load_other(source_text, checkpoint_text, base_text)
        gr.Info(f"Loaded {info['model']}.")
        controls = self.recommended_controls()
        return (model_markdown(info), gr.Markdown(visible=info["tiny"]),
                *(controls[name] for name in ("motion_factor", "duration", "appearance_factor", "prior_guidance",
                                              "animate_guidance", "prior_steps", "animate_steps")))

    @user_errors
    def apply_lora(self, source_text, scale):
        info = self.model.apply_lora(source_text, scale)
        lora = info["lora"]
        gr.Info(f"LoRA {lora['lora']} at scale {lora['lora_scale']:g}." if lora else "No LoRA: the base model.")
        return model_markdown(info)

    @user_errors
    def list_models(self):
        """The Model panel's choices, found again in the allowed folders."""
        pipelines, loras = self.model.sources.found()
        return gr.Dropdown(choices=model_choices(pipelines)), gr.Dropdown(choices=loras)

    @user_errors
    def toggle_offload(self, mode):
        return model_markdown(self.model.set_offload(mode))

    @user_errors
    def toggle_vae_tiling(self, enabled):
        return model_markdown(self.model.set_vae_tiling(enabled))


# ----------------------------------------------------------------------------------------------------------------
# The app
def wire_events(demo: gr.Blocks, on: Handlers, state: SessionState, prior: PriorPanel, step2: AnimatePanel,
                videos: VideoPanel, queue: QueuePanel, history: HistoryPanel, model: ModelPanel) -> None:
    """Every event of the Studio tab. A GPU job from the page first has its values and the queue checked (a
    UI_EVENT without outputs, so that its refusal reaches the page and marks no field), then runs as a GPU_EVENT;
    what it changed beyond its outputs is shown after it succeeds."""
    sid = state.session_id
    step1_inputs = [prior.prompt, prior.negative, prior.seed, prior.randomize, prior.steps, prior.guidance,
                    prior.candidates]
    step2_inputs = [step2.motion_prompts, step2.motion_factor, step2.appearance_factor, step2.duration, step2.steps,
                    step2.guidance, step2.seed, step2.randomize, step2.interpolation, step2.upscale, step2.quality]
    restored = [prior.prompt, prior.negative, prior.seed, prior.candidates, prior.steps, prior.guidance,
                prior.randomize, step2.motion_prompts, step2.motion_factor, step2.appearance_factor, step2.duration,
                step2.steps, step2.guidance, step2.seed, step2.randomize, step2.interpolation, step2.upscale,
                step2.quality]
    demo.load(on.restore, [state.browser_session, state.browser_inputs],
              [sid, state.browser_session, prior.gallery, step2.current, history.gallery, *videos.outputs,
               *restored, model.info, model.banner],
              **QUICK_EVENT)
    # Every change of an input is kept in the browser: a refresh brings back what was typed but not run yet.
    gr.on([c.change for c in restored], keep_inputs, restored, [state.browser_inputs], preprocess=False,
          **QUICK_EVENT)
    demo.unload(on.release)

    prior_job = gr.on([prior.generate.click, prior.prompt.submit], on.check_prior, [sid, *step1_inputs], None,
                      preprocess=False, **UI_EVENT).success(
        on.generate_prior, [sid, prior.prompt, prior.negative, prior.seed, prior.randomize, prior.steps,
                            prior.guidance, prior.candidates, step2.motion_prompts],
        [sid, prior.gallery, prior.seed, step2.current, step2.motion_prompts], api_name="generate_prior",
        preprocess=False, **GPU_EVENT)
    prior_job.success(on.show_history, [sid], [history.gallery], **QUICK_EVENT)

    # Not a GPU event: choosing one of the session's priors is instant and must not wait behind other people's jobs;
    # the rare image that has to be encoded (a cached example) waits for the model's own lock.
    prior.gallery.select(on.choose_prior, [sid, prior.gallery, prior.prompt, step2.motion_prompts],
                         [sid, step2.current, step2.motion_prompts], **UI_EVENT).success(
        on.show_history, [sid], [history.gallery], **QUICK_EVENT)

    prior.choose_candidate.click(on.choose_candidate, [sid, prior.candidate_index, step2.motion_prompts],
                                 [sid, step2.current, step2.motion_prompts], api_name="choose_candidate",
                                 preprocess=False, **{**UI_EVENT, "api_visibility": "public"}).success(
        on.show_history, [sid], [history.gallery], **QUICK_EVENT)

    upload_job = gr.on([prior.upload.upload, prior.reframe.click], on.check_upload, [sid], None, **UI_EVENT).success(
        on.use_image, [sid, prior.upload, step2.motion_prompts, prior.framing, prior.crop_position],
        [sid, step2.current, step2.motion_prompts],
        api_name="use_image", **GPU_EVENT)
    upload_job.success(on.show_history, [sid], [history.gallery], **QUICK_EVENT)

    animate_job = gr.on([step2.animate.click, step2.motion_prompts.submit], on.check_animate, [sid, *step2_inputs],
                        None, preprocess=False, **UI_EVENT).success(
        on.run_animate, [sid, *step2_inputs], [sid, videos.batch_files, videos.batch_settings, step2.seed],
        api_name="animate", show_progress_on=[videos.slots[0][1]], show_progress="minimal", preprocess=False,
        **GPU_EVENT)
    animate_job.success(on.show_videos, [sid], [*videos.outputs, history.gallery], **QUICK_EVENT)
    # The live preview: the running animation writes one every few steps; each page shows the newest in slot 0.
    videos.preview_timer.tick(on.show_preview, [sid, videos.preview_shown],
                              [videos.slots[0][1], videos.preview_shown], **QUICK_EVENT)

    # Both steps in one call, for API clients and MCP agents (whose calls share no session): the page's own inputs,
    # no state; the page never triggers it (its button is hidden).
    videos.text_to_video.click(on.text_to_video, [prior.prompt, step2.motion_prompts, step2.motion_factor,
                                                  step2.appearance_factor, step2.duration, step2.steps, step2.guidance,
                                                  step2.seed], [videos.batch_files], api_name="text_to_video",
                               preprocess=False, **GPU_EVENT)

    # The queue: a job checked and added now, run by the queue's worker when its turn comes; each page shows its own.
    prior.queue.click(on.queue_prior, [sid, *step1_inputs], [sid, queue.table, queue.accordion], preprocess=False,
                      **UI_EVENT)
    step2.queue.click(on.queue_animate, [sid, *step2_inputs], [sid, queue.table, queue.accordion], preprocess=False,
                      **UI_EVENT)
    queue.table.select(on.pick_job, None, [queue.number], **QUICK_EVENT)
    queue.cancel.click(on.cancel_job, [sid, queue.number], [queue.table], **UI_EVENT)
    queue.timer.tick(on.show_queue, [sid, queue.finished],
                     [queue.table, queue.finished, *videos.outputs, history.gallery, prior.gallery, step2.current],
                     **QUICK_EVENT)

    # The flag stops a running job at its next step; `cancels` drops this page's jobs still waiting in line.
    step2.stop.click(on.request_stop, [sid], None, cancels=[prior_job, upload_job, animate_job], api_name="stop",
                     **STOP_EVENT).then(on.show_after_stop, [sid], [*videos.outputs, history.gallery], **QUICK_EVENT)

    history.gallery.select(on.select_history, [sid, history.gallery, history.selected],
                           [history.selected, history.settings, history.previous], **QUICK_EVENT)
    history.compare.click(on.compare_videos, [sid, history.previous, history.selected],
                          [history.compared_row, *history.compared], **UI_EVENT)
    history.remix.click(on.send_back, [sid, history.selected],
                        [prior.prompt, prior.negative, prior.seed, prior.randomize, prior.steps, prior.guidance,
                         step2.motion_prompts, step2.motion_factor, step2.appearance_factor, step2.duration,
                         step2.steps, step2.guidance, step2.seed, step2.randomize, step2.interpolation,
                         step2.upscale, step2.quality, step2.current], **UI_EVENT).success(
        None, js=SCROLL_TO_INPUTS)

    if model.loading is None:
        return  # a public deployment: the operator's controls, and their events, do not exist
    model.offload.input(on.toggle_offload, [model.offload], [model.info], api_visibility="private", **GPU_EVENT)
    model.vae_tiling.input(on.toggle_vae_tiling, [model.vae_tiling], [model.info], api_visibility="private",
                           **GPU_EVENT)
    loading = model.loading
    loading.accordion.expand(on.list_models, None, [loading.source, loading.lora], **QUICK_EVENT)
    loading.load.click(on.load_model, [loading.source, loading.vgen_checkpoint, loading.vgen_base],
                       [model.info, model.banner, step2.motion_factor, step2.duration, step2.appearance_factor,
                        prior.guidance, step2.guidance, prior.steps, step2.steps],
                       api_visibility="private", **GPU_EVENT)
    loading.apply_lora.click(on.apply_lora, [loading.lora, loading.lora_scale], [model.info],
                             api_visibility="private", **GPU_EVENT)


def create_demo(model, store: SessionStore, *, queue_size: int | None = DEFAULT_QUEUE_SIZE,
                on_spaces: bool = False, allow_model_loading: bool = True, training=None) -> gr.Blocks:
    """`training`: a studio.train_tab.TrainingWorkspace to show the Train tab, or None.
    `allow_model_loading`: the operator's controls (loading another model, CPU offload), which change the model for
    every user; off wherever others can reach the studio (app.py decides), and then not built at all."""
    # The examples' priors and videos are made once, on first use, and shown to every visitor from Gradio's cache; they
    # are made in a session of their own (a click on a prior encodes it as the visitor's prior).
    examples_session_id = store.ensure(None).id
    # Gradio keeps lazily cached examples across restarts, in a folder named after their place on the page and read
    # from the environment only: inside this server's store, another model (or the same one retrained) never shows
    # examples made by an earlier one, and they go with the store.
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(store.root / "examples")
    with StudioBlocks(title="HiGen Studio", delete_cache=(3600, 6 * 3600)) as demo:
        handlers = Handlers(model, store, demo, queue_size, examples_session_id)
        state = SessionState(gr.State(None), gr.BrowserState(None, storage_key=SESSION_STORAGE_KEY),
                             gr.BrowserState(None, storage_key=INPUTS_STORAGE_KEY))
        selected_history = gr.State(None)
        banner = build_header(model, on_spaces)
        with gr.Tabs():
            with gr.Tab("Studio"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1):
                        prior = build_prior_panel(model, handlers.example_prior)
                    with gr.Column(scale=1):
                        step2 = build_animate_panel(model, handlers.example_videos)
                videos = build_video_panel(handlers.slot_count)
                queue = build_queue_panel()
                history = build_history_panel(selected_history)
                model_panel = build_model_panel(model, banner, allow_model_loading)
            if training is not None:
                with gr.Tab("Train"):
                    build_train_tab(training, demo)
        wire_events(demo, handlers, state, prior, step2, videos, queue, history, model_panel)
    demo.queue(max_size=None if queue_size is None else queue_size + UI_HEADROOM, default_concurrency_limit=1)
    demo.cached_examples = [e for e in (prior.examples, step2.examples) if e is not None and e.cache_examples]
    return demo


def make_cached_examples(demo: gr.Blocks) -> threading.Thread:
    """Make each cached example of `demo`, one after another in a background thread, so that even the first click
    on one shows it at once. The examples are Gradio's lazily cached ones: a click on an example not made yet makes
    it then (waiting for this thread if it is making that one), and the model's lock keeps their jobs from
    overlapping with any other."""

    def make_all():
        for examples in demo.cached_examples:
            for index in range(len(examples.examples)):
                try:
                    examples.load_from_cache(index)
                except Exception:  # the first click on that example will make it again, and say what went wrong
                    log.exception("could not make example %d of %s ahead", index, examples.dataset.elem_id)

    thread = threading.Thread(target=make_all, name="higen-studio-examples", daemon=True)
    thread.start()
    return thread
