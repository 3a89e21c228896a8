# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""HiGen Studio's Gradio UI.

`create_demo(model, store)` builds the Blocks app around a model object (studio.model.StudioModel, or anything with
the same methods) and a SessionStore. This file imports no torch: every computation is a call on `model`.

Every GPU event shares one concurrency id with a limit of 1, so spatial reasoning, temporal reasoning, image encoding
and model loading never overlap, whoever asked for them.
"""

from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr

from . import JobStopped, StudioError
from .sessions import PriorRecord, Session, SessionStore, VideoRecord

SESSION_STORAGE_KEY = "higen-studio-session"
DEFAULT_QUEUE_SIZE = 16
GPU_EVENT = {"concurrency_id": "gpu", "concurrency_limit": 1}
# Handlers that may show a message go through the queue, because only queued events bring gr.Error and gr.Info to the
# page; with no concurrency limit they never wait behind a GPU job.
UI_EVENT = {"concurrency_id": "ui", "concurrency_limit": None, "api_visibility": "private"}
# Handlers that only show data skip the queue: a finished result is shown, and Stop works, even when it is full.
QUICK_EVENT = {"queue": False, "api_visibility": "private"}
# Places in Gradio's queue beyond `queue_size`: the studio refuses GPU jobs itself once `queue_size` wait, with a
# clear message, and its message-showing handlers still need to get in to say so.
UI_HEADROOM = 8
# Passed to launch(): Gradio 6 takes page CSS there. A prior is shown whole in its box whatever its size (the tiny
# model's are 16 pixels wide).
CSS = "#prior-current img { width: 100%; height: 100%; object-fit: contain; }"
TINY_BANNER = ("⚠️ **This is an untrained tiny model** with random weights: it exercises every control but makes "
               "noise, not pictures. Load a real model in the *Model* panel below, or start with "
               "`python app.py --model DIR_OR_HUB_ID`.")


def queue_full_message(waiting: int, max_size: int | None) -> str | None:
    """The error shown instead of joining a full queue; None while there is room."""
    if max_size is None or waiting < max_size:
        return None
    return (f"The studio is busy: {waiting} jobs are already waiting, the most it queues. Please try again in a "
            f"minute.")


def user_errors(fn):
    """Handlers raise StudioError with text meant for the person at the keyboard: show it as a Gradio error."""

    @functools.wraps(fn)  # Gradio reads the signature (gr.Progress, gr.SelectData, gr.Request) through this
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except JobStopped as e:
            raise gr.Error(str(e), title="Stopped") from None
        except StudioError as e:
            raise gr.Error(str(e)) from None

    return wrapper


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
            items.append((str(record.gif_path), f"video · {s['motion_prompt']} · γm {s['motion_factor']:g} · "
                                                f"γa {s['appearance_factor']:g} · seed {s['seed']}"))
        else:
            s = record.settings
            text = s.get("prompt") or s.get("file", "image")
            seed = f" · seed {s['seed']}" if "seed" in s else ""
            items.append((str(record.image_path), f"prior · {text}{seed}"))
    return items


def current_prior_image(session: Session):
    prior = session.current_prior
    if prior is None:
        return gr.Image(value=None, label="Current prior: none yet")
    s = prior.settings
    where = f"seed {s['seed']}" if "seed" in s else s.get("file", "your image")
    return gr.Image(value=str(prior.image_path), label=f"Current prior · {where}")


def default_motion_prompts(current_text: str, previous: PriorRecord | None, new: PriorRecord) -> str:
    """The new prior's prompt replaces the motion prompts unless the person has written their own."""
    untouched = (current_text or "").strip() in ("", previous.prompt if previous else "")
    return new.prompt if untouched and new.prompt else current_text


def model_markdown(info: dict) -> str:
    offload = "on" if info["offload"] else "off"
    return (f"**Model** `{info['model']}` · device `{info['device']}` · dtype `{info['dtype']}` · "
            f"CPU offload {offload}")


def create_demo(model, store: SessionStore, *, queue_size: int | None = DEFAULT_QUEUE_SIZE,
                on_spaces: bool = False, allow_model_loading: bool = True, training=None) -> gr.Blocks:
    """`training`: a studio.train_tab.TrainingWorkspace to show the Train tab, or None.
    `allow_model_loading`: off on a Space or a public share link, where a visitor must not load files by path."""
    limits = model.limits
    low, high = model.motion_factor_range
    slot_count = limits["max_motion_prompts"]

    # On a Space the examples' priors are made once, on first use, and shown to every visitor from Gradio's cache;
    # they are made in a session of their own (a click on one encodes it as the visitor's prior).
    examples_session_id = store.ensure(None).id if on_spaces else None

    def example_prior(prompt_text):
        session = store.ensure(examples_session_id)
        model.generate_prior(session, prompt_text, "", 0, False, 50, model.default_guidance,
                             limits["max_candidates"])
        return candidates_gallery(session)

    with gr.Blocks(title="HiGen Studio", delete_cache=(3600, 6 * 3600)) as demo:
        session_id = gr.State(None)
        browser_session = gr.BrowserState(None, storage_key=SESSION_STORAGE_KEY)
        selected_history = gr.State(None)

        gr.Markdown("# HiGen Studio\nText-to-video in two steps (HiGen, CVPR 2024): **1. spatial prior** — an "
                    "image from your prompt; **2. animate** — the same image brought to life by one or more motion "
                    "prompts, as often as you like.")
        banner = gr.Markdown(TINY_BANNER, visible=model.is_tiny, elem_id="model-banner")

        with gr.Tabs():
            with gr.Tab("Studio"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1):
                        gr.Markdown("### 1 · Spatial prior")
                        prompt = gr.Textbox(label="Prompt", lines=2, elem_id="prior-prompt",
                                            placeholder=model.example_prompts[0])
                        negative = gr.Textbox(label="Negative prompt", elem_id="prior-negative",
                                              placeholder="what the picture should not show (optional)")
                        with gr.Row():
                            seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=limits["max_seed"],
                                             elem_id="prior-seed",
                                             info="Shows the seed last used: untick Randomize to reuse it.")
                            randomize = gr.Checkbox(True, label="Randomize seed", elem_id="prior-randomize")
                        with gr.Row():
                            candidates = gr.Slider(1, limits["max_candidates"], value=min(4, limits["max_candidates"]),
                                                   step=1, label="Candidates", elem_id="prior-candidates")
                            steps = gr.Slider(1, limits["max_steps"], value=50, step=1, label="Steps",
                                              elem_id="prior-steps")
                            guidance = gr.Slider(0, 20, value=model.default_guidance, step=0.5, label="Guidance",
                                                 elem_id="prior-guidance")
                        generate = gr.Button("Generate prior", variant="primary", elem_id="prior-generate")
                        gallery = gr.Gallery(label="Candidates: click one to animate it", columns=4, height=260,
                                             fit_columns=False, object_fit="contain", allow_preview=False,
                                             elem_id="prior-gallery")
                        with gr.Accordion("Use my own image", open=False):
                            upload = gr.File(label="Image (PNG, JPEG, WebP or BMP, up to 20 MB)",
                                             file_types=["image"], elem_id="prior-upload")
                        gr.Examples([[p] for p in model.example_prompts], inputs=[prompt], outputs=[gallery],
                                    fn=example_prior if on_spaces else None, cache_examples=on_spaces,
                                    cache_mode="lazy")

                    with gr.Column(scale=1):
                        gr.Markdown("### 2 · Animate")
                        with gr.Row(equal_height=False):
                            current = gr.Image(label="Current prior: none yet", interactive=False, height=220,
                                               elem_id="prior-current")
                            with gr.Column():
                                motion_prompts = gr.Textbox(
                                    label=f"Motion prompts: one per line, up to {slot_count}", lines=3,
                                    max_lines=slot_count, elem_id="motion-prompts",
                                    placeholder="Empty: the prior's prompt")
                                motion_factor = gr.Slider(low, high, value=model.default_motion_factor, step=1,
                                                          label="Motion factor γm", elem_id="motion-factor",
                                                          info="How much consecutive frames differ.")
                                appearance_factor = gr.Slider(0, 1, value=model.default_appearance_factor,
                                                              step=0.05, label="Appearance factor γa",
                                                              elem_id="appearance-factor",
                                                              info="How much the look changes from first to last "
                                                                   "frame.")
                        if model.motion_examples:
                            gr.Examples(model.motion_examples, inputs=[motion_prompts, motion_factor],
                                        example_labels=model.motion_example_labels,
                                        label="Motion examples, each with the γm of its motion")
                        with gr.Row():
                            frames = gr.Slider(2, model.max_frames, value=model.num_frames, step=1, label="Frames",
                                               elem_id="animate-frames")
                            animate_steps = gr.Slider(1, limits["max_steps"], value=50, step=1, label="Steps",
                                                      elem_id="animate-steps")
                            animate_guidance = gr.Slider(0, 20, value=model.default_guidance, step=0.5,
                                                         label="Guidance", elem_id="animate-guidance")
                        with gr.Row():
                            animate_seed = gr.Number(0, label="Seed", precision=0, minimum=0,
                                                     maximum=limits["max_seed"], elem_id="animate-seed")
                            animate_randomize = gr.Checkbox(True, label="Randomize seed",
                                                            elem_id="animate-randomize")
                        with gr.Row():
                            animate = gr.Button("Animate", variant="primary", elem_id="animate")
                            stop = gr.Button("Stop", variant="stop", elem_id="stop")

                gr.Markdown("### Videos")
                slots = []
                with gr.Row(elem_id="videos"):
                    for i in range(slot_count):
                        # Slot 0 stays visible so that the progress of an animation has a place to show.
                        with gr.Column(visible=i == 0, min_width=200) as column:
                            video = gr.Video(label="Videos appear here", interactive=False, loop=True,
                                             autoplay=True, height=260, elem_classes=["studio-video"])
                            files = gr.File(label="MP4 · GIF · settings", file_count="multiple", visible=False,
                                            interactive=False)
                        slots.append((column, video, files))
                with gr.Accordion("Files and settings of the last batch", open=False):
                    batch_files = gr.File(label="Files", file_count="multiple", interactive=False)
                    batch_settings = gr.JSON(label="Settings")

                gr.Markdown("### History\nThis browser's priors and videos; they stay across page refreshes and are "
                            "deleted a while after you close the page.")
                with gr.Row(equal_height=False):
                    history = gr.Gallery(label="History", columns=6, height=240, allow_preview=False,
                                         fit_columns=False, object_fit="contain", elem_id="history", scale=3)
                    with gr.Column(scale=1):
                        history_settings = gr.JSON(label="Settings of the selected item", elem_id="history-settings")
                        remix = gr.Button("Send back to inputs", elem_id="history-remix")

                with gr.Accordion("Model", open=False):
                    model_info = gr.Markdown(model_markdown(model.describe()), elem_id="model-info")
                    offload = gr.Checkbox(model.offload, label="CPU offload (slower, much less GPU memory)",
                                          interactive=model.describe()["device"].startswith("cuda"),
                                          elem_id="model-offload")
                    with gr.Group(visible=allow_model_loading, elem_id="model-loading"):
                        source = gr.Textbox(label="Pipeline folder or hub id", elem_id="model-source")
                        vgen_checkpoint = gr.Textbox(label="…or the released VGen checkpoint (.pth)",
                                                     elem_id="model-vgen")
                        vgen_base = gr.Textbox(label="Base for the checkpoint (SD 2.x folder or hub id)",
                                               elem_id="model-base")
                        load_button = gr.Button("Load model", elem_id="model-load")

            if training is not None:
                from .train_tab import build_train_tab

                with gr.Tab("Train"):
                    build_train_tab(training)

        slot_outputs = [component for slot in slots for component in slot]

        # ------------------------------------------------------------------------------------------------------------
        # Handlers: thin adapters from components to the model's methods.
        def check_queue():
            # Runs before every GPU job from the page: Gradio's own refusal of a full queue does not say why. Gradio
            # has no public reader of its queue's length.
            waiting = len(demo._queue)
            message = queue_full_message(waiting, queue_size)
            if message:
                raise gr.Error(message, title="Busy")

        def slot_updates(videos: list[VideoRecord]) -> list:
            updates = []
            for i in range(slot_count):
                if i < len(videos):
                    v = videos[i]
                    updates += [gr.Column(visible=True), gr.Video(value=str(v.mp4_path), label=v.label),
                                gr.File(value=v.files, visible=True)]
                else:
                    updates += [gr.Column(visible=i == 0), gr.Video(value=None, label="Videos appear here"),
                                gr.File(value=None, visible=False)]
            return updates

        def restore(browser_id, request: gr.Request):
            session = store.attach(browser_id, request.session_hash)
            return [session.id, session.id, candidates_gallery(session), current_prior_image(session),
                    history_gallery(session), *slot_updates(session.last_videos)]

        def release(request: gr.Request):
            store.detach(request.session_hash)

        @user_errors
        def generate_prior(sid, prompt, negative_prompt, seed, randomize_seed, steps, guidance, candidates,
                           motion_prompts, progress=gr.Progress()):
            session = store.ensure(sid)
            previous = session.current_prior
            batch = model.generate_prior(session, prompt, negative_prompt, seed, randomize_seed, steps, guidance,
                                         candidates, progress=progress)
            return (session.id, candidates_gallery(session), batch.seed, current_prior_image(session),
                    default_motion_prompts(motion_prompts, previous, batch.priors[0]))

        @user_errors
        def choose_prior(sid, gallery_value, prompt_text, motion_text, evt: gr.SelectData):
            session = store.ensure(sid)
            previous = session.current_prior
            prior = model.choose_prior(session, gallery_path(gallery_value[evt.index]), prompt=prompt_text)
            return session.id, current_prior_image(session), default_motion_prompts(motion_text, previous, prior)

        @user_errors
        def use_image(sid, image, motion_prompts):
            session = store.ensure(sid)
            previous = session.current_prior
            prior = model.use_image(session, image)
            return session.id, current_prior_image(session), default_motion_prompts(motion_prompts, previous, prior)

        @user_errors
        def run_animate(sid, motion_prompts, motion_factor, appearance_factor, num_frames, steps, guidance, seed,
                        randomize_seed, progress=gr.Progress()):
            session = store.ensure(sid)
            result = model.animate(session, motion_prompts, motion_factor, appearance_factor, num_frames, steps,
                                   guidance, seed, randomize_seed, progress=progress)
            files = [path for video in result.videos for path in video.files]
            return session.id, files, [video.settings for video in result.videos], result.seed

        def show_videos(sid):
            session = store.ensure(sid)
            return [*slot_updates(session.last_videos), history_gallery(session)]

        def show_history(sid):
            return history_gallery(store.ensure(sid))

        def request_stop(sid):
            session = store.get(sid)
            if session is not None:
                model.request_stop(session)

        def select_history(sid, history_value, evt: gr.SelectData):
            session = store.ensure(sid)
            record = session.find(record_id_from_path(gallery_path(history_value[evt.index])))
            return (record.id, record.settings) if record is not None else (None, None)

        @user_errors
        def send_back(sid, record_id):
            if record_id is None:
                raise StudioError("Click an item of the history first.")
            session = store.ensure(sid)
            kind, values = model.remix(session, record_id)
            skip = gr.skip()
            if kind == "prior":
                step1 = [values["prompt"], values["negative_prompt"], values["seed"], False, values["steps"],
                         values["guidance"]]
                step2 = [skip] * 8
            else:
                step1 = [skip] * 6
                step2 = [values["motion_prompts"], values["motion_factor"], values["appearance_factor"],
                         values["num_frames"], values["steps"], values["guidance"], values["seed"], False]
            return [*step1, *step2, current_prior_image(session)]

        @user_errors
        def load_model(source_text, checkpoint_text, base_text):
            info = model.load_other(source_text, checkpoint_text, base_text)
            low_, high_ = model.motion_factor_range
            gr.Info(f"Loaded {info['model']}.")
            return (model_markdown(info), gr.Markdown(visible=info["tiny"]),
                    gr.Slider(minimum=low_, maximum=high_, value=model.default_motion_factor),
                    gr.Slider(maximum=model.max_frames, value=model.num_frames),
                    gr.Slider(value=model.default_appearance_factor),
                    gr.Slider(value=model.default_guidance), gr.Slider(value=model.default_guidance))

        @user_errors
        def toggle_offload(enabled):
            return model_markdown(model.set_offload(enabled))

        # ------------------------------------------------------------------------------------------------------------
        # Events
        demo.load(restore, [browser_session],
                  [session_id, browser_session, gallery, current, history, *slot_outputs], **QUICK_EVENT)
        demo.unload(release)

        prior_job = gr.on([generate.click, prompt.submit], check_queue, None, None, **UI_EVENT).success(
            generate_prior, [session_id, prompt, negative, seed, randomize, steps, guidance, candidates,
                             motion_prompts],
            [session_id, gallery, seed, current, motion_prompts], api_name="generate_prior", **GPU_EVENT)
        prior_job.success(show_history, [session_id], [history], **QUICK_EVENT)

        # Not a GPU event: choosing one of the session's priors is instant and must not wait behind other people's
        # jobs; the rare image that has to be encoded (a cached example) waits for the model's own lock.
        gallery.select(choose_prior, [session_id, gallery, prompt, motion_prompts],
                       [session_id, current, motion_prompts], **UI_EVENT).success(
            show_history, [session_id], [history], **QUICK_EVENT)

        upload_job = upload.upload(check_queue, None, None, **UI_EVENT).success(
            use_image, [session_id, upload, motion_prompts], [session_id, current, motion_prompts],
            api_name="use_image", **GPU_EVENT)
        upload_job.success(show_history, [session_id], [history], **QUICK_EVENT)

        animate_job = animate.click(check_queue, None, None, **UI_EVENT).success(
            run_animate, [session_id, motion_prompts, motion_factor, appearance_factor, frames, animate_steps,
                          animate_guidance, animate_seed, animate_randomize],
            [session_id, batch_files, batch_settings, animate_seed], api_name="animate",
            show_progress_on=[slots[0][1]], **GPU_EVENT)
        animate_job.success(show_videos, [session_id], [*slot_outputs, history], **QUICK_EVENT)

        # The flag stops a running job at its next step; `cancels` drops this page's jobs still waiting in line.
        stop.click(request_stop, [session_id], None, cancels=[prior_job, upload_job, animate_job], queue=False,
                   api_name="stop")

        history.select(select_history, [session_id, history], [selected_history, history_settings], **QUICK_EVENT)
        remix.click(send_back, [session_id, selected_history],
                    [prompt, negative, seed, randomize, steps, guidance, motion_prompts, motion_factor,
                     appearance_factor, frames, animate_steps, animate_guidance, animate_seed, animate_randomize,
                     current], **UI_EVENT)

        offload.input(toggle_offload, [offload], [model_info], api_visibility="private", **GPU_EVENT)
        load_button.click(load_model, [source, vgen_checkpoint, vgen_base],
                          [model_info, banner, motion_factor, frames, appearance_factor, guidance, animate_guidance],
                          api_visibility="private", **GPU_EVENT)

    demo.queue(max_size=None if queue_size is None else queue_size + UI_HEADROOM, default_concurrency_limit=1)
    return demo
