# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""The studio's panels: one builder per panel, each laying out its components inside the caller's layout and returning
them (studio.ui wires their events). Like the rest of the UI, torch-free: what a control starts at is what the model
object says."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

INTRO = ("# HiGen Studio\nText-to-video in two steps (HiGen, CVPR 2024): **1. spatial prior** — an image from your "
         "prompt; **2. animate** — the same image brought to life by one or more motion prompts, as often as you "
         "like.")
TINY_BANNER = ("⚠️ **This is an untrained tiny model** with random weights: it exercises every control but makes "
               "noise, not pictures. Load a real model in the *Model* panel below, or start with "
               "`python app.py --model DIR_OR_HUB_ID`.")
# The prompt box's placeholder when the model declares no example prompts to take the first of.
PROMPT_PLACEHOLDER = "what the picture shows"
PRIOR_NOTE = ("The prior becomes the **middle frame** of every video: the motion runs from before it to after it.")
FACTOR_CHOICES = [("off", 1), ("2×", 2), ("3×", 3), ("4×", 4)]
QUEUE_COLUMNS = ("#", "job", "state", "result")
QUEUE_POLL_S = 2.0  # how often an open page looks at its queued jobs
# How often an open page looks for a running animation's live preview (a file check when there is none).
PREVIEW_POLL_S = 1.0


def duration_info(model) -> str:
    return f"{model.fps:g} fps, at most {model.max_frames} frames."


def model_markdown(info: dict) -> str:
    offload = "off" if info["offload"] == "none" else info["offload"]
    lora = f" · LoRA `{info['lora']['lora']}` at {info['lora']['lora_scale']:g}" if info.get("lora") else ""
    tiling = " · VAE tiling on" if info["vae_tiling"] else ""
    return (f"**Model** `{info['model']}`{lora} · device `{info['device']}` · dtype `{info['dtype']}` · "
            f"CPU offload {offload}{tiling}")


@dataclass
class SessionState:
    session_id: gr.State
    browser_session: gr.BrowserState
    browser_inputs: gr.BrowserState  # both steps' inputs as the page last showed them, run or not


@dataclass
class PriorPanel:
    prompt: gr.Textbox
    negative: gr.Textbox
    seed: gr.Number
    randomize: gr.Checkbox
    candidates: gr.Slider
    steps: gr.Slider
    guidance: gr.Slider
    generate: gr.Button
    queue: gr.Button
    gallery: gr.Gallery
    upload: gr.File
    framing: gr.Radio
    crop_position: gr.Slider
    reframe: gr.Button  # the uploaded image again, with the framing now chosen
    # The API's way to click a candidate (/choose_candidate): its 0-based index in the gallery; never on the page.
    candidate_index: gr.Number
    choose_candidate: gr.Button
    examples: gr.Examples | None = None  # the model's example prompts, if it declares some


@dataclass
class AnimatePanel:
    current: gr.Image
    motion_prompts: gr.Textbox
    motion_factor: gr.Slider
    appearance_factor: gr.Slider
    duration: gr.Slider  # seconds
    steps: gr.Slider
    guidance: gr.Slider
    seed: gr.Number
    randomize: gr.Checkbox
    interpolation: gr.Dropdown
    upscale: gr.Dropdown
    quality: gr.Slider
    animate: gr.Button
    queue: gr.Button  # the same job, added to the queue: it runs when the ones before it are done
    stop: gr.Button
    examples: gr.Examples | None = None  # the model's motion examples, if it declares some


@dataclass
class VideoPanel:
    slots: list[tuple[gr.Column, gr.Video, gr.File]]
    batch_files: gr.File
    batch_settings: gr.JSON
    preview_timer: gr.Timer
    preview_shown: gr.State  # the path of the preview this page shows last
    text_to_video: gr.Button  # hidden: the /text_to_video endpoint's trigger

    @property
    def outputs(self) -> list:
        """Every slot's column, video and files, in the order `Handlers.slot_updates` returns their updates."""
        return [component for slot in self.slots for component in slot]


@dataclass
class HistoryPanel:
    gallery: gr.Gallery
    settings: gr.JSON
    remix: gr.Button
    selected: gr.State  # the id of the record clicked last
    previous: gr.State  # the id of the record clicked before it
    compare: gr.Button
    compared_row: gr.Row  # hidden until a comparison is asked for
    compared: tuple[gr.Video, gr.Video]


@dataclass
class ModelLoading:
    accordion: gr.Accordion  # opening it lists the models and LoRAs found again (a Train tab's run may have ended)
    source: gr.Dropdown
    vgen_checkpoint: gr.Textbox
    vgen_base: gr.Textbox
    load: gr.Button
    lora: gr.Dropdown
    lora_scale: gr.Slider
    apply_lora: gr.Button


@dataclass
class ModelPanel:
    banner: gr.Markdown  # the header's tiny-model banner, which loading another model shows or hides
    info: gr.Markdown
    offload: gr.Radio
    vae_tiling: gr.Checkbox
    loading: ModelLoading | None  # None where the operator's controls are not built (public deployments)


def build_header(model, on_spaces: bool = False) -> gr.Markdown:
    """The title (on a Space, with a button to duplicate it), and the banner that says when the model is the
    untrained tiny one."""
    gr.Markdown(INTRO)
    if on_spaces:
        gr.DuplicateButton("Duplicate this Space: your own GPU, no queue", elem_id="duplicate-space")
    return gr.Markdown(TINY_BANNER, visible=model.is_tiny, elem_id="model-banner")


def build_prior_panel(model, example_fn=None) -> PriorPanel:
    """Step 1. `example_fn`: makes an example's priors, to cache on first use; None: an example only
    fills the prompt."""
    limits = model.limits
    gr.Markdown("### 1 · Spatial prior")
    prompt = gr.Textbox(label="Prompt", lines=2, elem_id="prior-prompt", info="Shift+Enter: Generate prior.",
                        placeholder=next(iter(model.example_prompts), PROMPT_PLACEHOLDER))
    # An empty value, not none: API clients may then leave it out.
    negative = gr.Textbox("", label="Negative prompt", elem_id="prior-negative",
                          placeholder="what the picture should not show (optional)")
    with gr.Row():
        seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=limits["max_seed"], elem_id="prior-seed",
                         info="Shows the seed last used: untick Randomize to reuse it.")
        randomize = gr.Checkbox(True, label="Randomize seed", elem_id="prior-randomize")
    with gr.Row():
        candidates = gr.Slider(1, limits["max_candidates"], value=min(4, limits["max_candidates"]), step=1,
                               label="Candidates", elem_id="prior-candidates")
        steps = gr.Slider(1, limits["max_steps"], value=model.default_steps, step=1, label="Steps",
                          elem_id="prior-steps")
        guidance = gr.Slider(0, 20, value=model.default_guidance, step=0.5, label="Guidance", elem_id="prior-guidance")
    with gr.Row():
        generate = gr.Button("Generate prior", variant="primary", elem_id="prior-generate", scale=3)
        queue = gr.Button("Add to queue", elem_id="prior-queue", scale=1)
    gallery = gr.Gallery(label="Candidates: click one to animate it", columns=4, height=260, fit_columns=False,
                         object_fit="contain", allow_preview=False, interactive=False, elem_id="prior-gallery")
    with gr.Accordion("Use my own image", open=False):
        with gr.Row():
            framing = gr.Radio([("Crop to fill the frame", "crop"), ("Fit it all in (black bars)", "fit")],
                               value="crop", label="Framing", elem_id="prior-framing")
            crop_position = gr.Slider(0, 1, value=0.5, step=0.05, label="Crop position",
                                      info="What a crop keeps: 0 the left or top, 1 the right or bottom.",
                                      elem_id="prior-crop-position")
        upload = gr.File(label="Image (PNG, JPEG, WebP or BMP, up to 20 MB)", file_types=["image"],
                         elem_id="prior-upload")
        reframe = gr.Button("Use it with this framing", size="sm", elem_id="prior-reframe")
    examples = None
    if model.example_prompts:
        examples = gr.Examples([[p] for p in model.example_prompts], inputs=[prompt], outputs=[gallery],
                               fn=example_fn, cache_examples=example_fn is not None, cache_mode="lazy")
    candidate_index = gr.Number(0, precision=0, visible=False, label="Candidate (0-based)")
    choose_candidate = gr.Button(visible=False)
    return PriorPanel(prompt, negative, seed, randomize, candidates, steps, guidance, generate, queue, gallery, upload,
                      framing, crop_position, reframe, candidate_index, choose_candidate, examples)


def build_animate_panel(model, example_fn=None) -> AnimatePanel:
    """Step 2: the current prior, the motion prompts and factors, and the model's motion examples if it has some.
    `example_fn`: makes an example's videos, to cache on first use (only for a model with an example prompt to make
    their prior from); None: an example only fills the motion prompts and γm."""
    limits = model.limits
    low, high = model.motion_factor_range
    slot_count = limits["max_motion_prompts"]
    gr.Markdown("### 2 · Animate")
    with gr.Row(equal_height=False):
        with gr.Column():
            current = gr.Image(label="Current prior: none yet", interactive=False, height=220,
                               elem_id="prior-current")
            gr.Markdown(PRIOR_NOTE, elem_id="prior-note")
        with gr.Column():
            motion_prompts = gr.Textbox("", label=f"Motion prompts: one per line, up to {slot_count}", lines=3,
                                        max_lines=slot_count, elem_id="motion-prompts",
                                        info="Enter: a new line. Shift+Enter: Animate.",
                                        placeholder="Empty: the prior's prompt")
            motion_factor = gr.Slider(low, high, value=model.default_motion_factor, step=1, label="Motion factor γm",
                                      elem_id="motion-factor", info="How much consecutive frames differ.")
            appearance_factor = gr.Slider(0, 1, value=model.default_appearance_factor, step=0.05,
                                          label="Appearance factor γa", elem_id="appearance-factor",
                                          info="How much the look changes from first to last frame.")
    examples = None
    if model.motion_examples:
        cached = example_fn is not None and bool(model.example_prompts)
        # Rendered under the examples that fill it; made first because the examples name it as their output.
        videos = gr.Gallery(label=f"An example's videos, animating \"{model.example_prompts[0]}\"" if cached else None,
                            columns=4, height=260, fit_columns=False, object_fit="contain", interactive=False,
                            elem_id="motion-example-videos", render=False)  # a click plays a video large
        examples = gr.Examples(model.motion_examples, inputs=[motion_prompts, motion_factor],
                               outputs=[videos] if cached else None, fn=example_fn if cached else None,
                               cache_examples=cached, cache_mode="lazy", example_labels=model.motion_example_labels,
                               label="Motion examples, each with the γm of its motion")
        if cached:
            videos.render()
    with gr.Row():
        shortest, longest, step = model.duration_range
        duration = gr.Slider(shortest, longest, value=model.default_duration, step=step, label="Duration (s)",
                             elem_id="animate-duration", info=duration_info(model))
        steps = gr.Slider(1, limits["max_steps"], value=model.default_steps, step=1, label="Steps",
                          elem_id="animate-steps")
        guidance = gr.Slider(0, 20, value=model.default_guidance, step=0.5, label="Guidance",
                             elem_id="animate-guidance")
    with gr.Row():
        seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=limits["max_seed"], elem_id="animate-seed")
        randomize = gr.Checkbox(True, label="Randomize seed", elem_id="animate-randomize")
    with gr.Accordion("Output: smoother, larger, file quality", open=False):
        with gr.Row():
            interpolation = gr.Dropdown(FACTOR_CHOICES, value=1, label="Frame interpolation",
                                        info="In-between frames, motion-compensated: 2× is twice the frame rate.",
                                        elem_id="output-interpolation")
            upscale = gr.Dropdown(FACTOR_CHOICES, value=1, label="Upscaling", info="Lanczos resampling.",
                                  elem_id="output-upscale")
        quality = gr.Slider(0, 51, value=model.default_quality, step=1, label="MP4 quality (x264 CRF)",
                            info="Lower is better and larger; 17 looks lossless, 23 is x264's default.",
                            elem_id="output-quality")
    with gr.Row():
        animate = gr.Button("Animate", variant="primary", elem_id="animate", scale=2)
        queue = gr.Button("Add to queue", elem_id="animate-queue", scale=1)
        stop = gr.Button("Stop", variant="stop", elem_id="stop", scale=1)
    return AnimatePanel(current, motion_prompts, motion_factor, appearance_factor, duration, steps, guidance, seed,
                        randomize, interpolation, upscale, quality, animate, queue, stop, examples)


def build_video_panel(slot_count: int) -> VideoPanel:
    """One slot per motion prompt of a batch, and the last batch's files and settings."""
    gr.Markdown("### Videos")
    slots = []
    with gr.Row(elem_id="videos"):
        for i in range(slot_count):
            # Slot 0 stays visible so that the progress of an animation has a place to show.
            with gr.Column(visible=i == 0, min_width=200) as column:
                video = gr.Video(label="Videos appear here", interactive=False, loop=True, autoplay=True, height=260,
                                 elem_classes=["studio-video"])
                files = gr.File(label="MP4 · GIF · settings", file_count="multiple", visible=False,
                                interactive=False)
            slots.append((column, video, files))
    with gr.Accordion("Files and settings of the last batch", open=False):
        batch_files = gr.File(label="Files", file_count="multiple", interactive=False)
        batch_settings = gr.JSON(label="Settings")
    return VideoPanel(slots, batch_files, batch_settings, gr.Timer(PREVIEW_POLL_S), gr.State(None),
                      gr.Button(visible=False))


@dataclass
class QueuePanel:
    accordion: gr.Accordion  # closed until a job is added
    table: gr.Dataframe
    number: gr.Number
    cancel: gr.Button
    timer: gr.Timer
    finished: gr.State  # how many of the session's jobs had ended when this page last looked


def build_queue_panel() -> QueuePanel:
    with gr.Accordion("Queue: jobs added with “Add to queue” run one after another", open=False) as accordion:
        # Long job texts wrap, so that every column (what waits, what runs) stays in view.
        table = gr.Dataframe(headers=list(QUEUE_COLUMNS), datatype=["number", "str", "str", "str"],
                             column_widths=["7%", "55%", "13%", "25%"], wrap=True, interactive=False,
                             elem_id="queue", label="Your jobs")
        with gr.Row():
            number = gr.Number(None, precision=0, label="Job # (or click its row)", elem_id="queue-number", scale=1)
            cancel = gr.Button("Cancel that waiting job", elem_id="queue-cancel", scale=1)
    return QueuePanel(accordion, table, number, cancel, gr.Timer(QUEUE_POLL_S), gr.State(0))


def build_history_panel(selected: gr.State) -> HistoryPanel:
    gr.Markdown("### History\nThis browser's priors and videos; they stay across page refreshes and are deleted a "
                "while after you close the page.")
    with gr.Row(equal_height=False):
        gallery = gr.Gallery(label="History", columns=6, height=240, allow_preview=False, fit_columns=False,
                             object_fit="contain", interactive=False, elem_id="history", scale=3)
        with gr.Column(scale=1):
            settings = gr.JSON(label="Settings of the selected item", elem_id="history-settings")
            remix = gr.Button("Send back to inputs", elem_id="history-remix")
            compare = gr.Button("Compare the last two videos clicked", elem_id="history-compare")
    with gr.Row(elem_id="history-compared", visible=False) as compared_row:
        compared = tuple(gr.Video(label=f"Compared video {name}", interactive=False, loop=True, autoplay=True,
                                  height=260, elem_id=f"compare-{name}") for name in ("a", "b"))
    return HistoryPanel(gallery, settings, remix, selected, gr.State(None), compare, compared_row, compared)


def model_choices(pipelines: list[str]) -> list[str]:
    """What "Load model" offers: the built-in tiny model, then the pipeline folders found."""
    return ["tiny", *pipelines]


def build_model_panel(model, banner: gr.Markdown, allow_model_loading: bool) -> ModelPanel:
    """What runs, and, where `allow_model_loading` is on, the operator's controls: CPU offload and loading another
    model. Off (a public deployment), those controls are not built at all, so no event of theirs exists to call."""
    info = model.describe()
    loading = None
    with gr.Accordion("Model", open=False) as accordion:
        markdown = gr.Markdown(model_markdown(info), elem_id="model-info")
        with gr.Row():
            offload = gr.Radio([("None (fastest)", "none"), ("Model: each part on the GPU only to run", "model"),
                                ("Sequential: each layer (slowest, least memory)", "sequential")],
                               value=model.offload, label="GPU memory: CPU offload (on a GPU)",
                               interactive=allow_model_loading and info["device"].startswith("cuda"),
                               elem_id="model-offload")
            vae_tiling = gr.Checkbox(model.vae_tiling, label="VAE tiling: decode large frames in tiles (less memory)",
                                     interactive=allow_model_loading, elem_id="model-vae-tiling")
        if allow_model_loading:
            pipelines, loras = model.sources.found()
            with gr.Group(elem_id="model-loading"):
                source = gr.Dropdown(model_choices(pipelines), value=None, allow_custom_value=True,
                                     label="Pipeline folder or hub id, or \"tiny\"", elem_id="model-source",
                                     info="Those found in the folders this studio allows (the Train tab's runs "
                                          "among them), or any path or hub id `python app.py --allow-models` allows.")
                vgen_checkpoint = gr.Textbox(label="…or the released VGen checkpoint (.pth)", elem_id="model-vgen")
                vgen_base = gr.Textbox(label="Base for the checkpoint (SD 2.x folder)", elem_id="model-base")
                load = gr.Button("Load model", elem_id="model-load")
            with gr.Group(elem_id="model-lora-group"):
                lora = gr.Dropdown(loras, value=None, allow_custom_value=True,
                                   label="LoRA: the lora folder of a LoRA training run, its file, or a hub id (empty: "
                                         "none)", elem_id="model-lora")
                lora_scale = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="LoRA scale (0: the base model)",
                                       elem_id="model-lora-scale")
                apply = gr.Button("Apply LoRA", elem_id="model-lora-apply")
            loading = ModelLoading(accordion, source, vgen_checkpoint, vgen_base, load, lora, lora_scale, apply)
    return ModelPanel(banner, markdown, offload, vae_tiling, loading)
