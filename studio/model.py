# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""The studio's model object: a HiGenPipeline and the handlers the UI calls, as plain methods.

All torch code of the studio is here and in studio.preview (the live preview of an animation). A handler takes a
`Session` (studio.sessions) and plain values, writes its files into the session's folder and returns records; it
raises `StudioError` with a message for the person at the keyboard, and `JobStopped` when that person pressed Stop.

GPU work runs in "jobs" that take and return only picklable values: on a ZeroGPU Space they are wrapped with
`spaces.GPU` and run in a forked worker process.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import PIL.Image
import PIL.ImageOps
import torch

from higen_core import HiGenPipeline, HiGenSettings, PipelineLoadError, load_pipeline, video_io
from higen_core.loading import OFFLOAD_MODES, TINY, apply_lora, resolve_device, resolve_dtype
from higen_core.settings import MAX_MOTION_FACTOR

from . import JobStopped, StudioError, inputs
from .access import ModelSources
from .preview import PreviewWriter, latent_rgb_projection
from .sessions import PriorRecord, Session, StopFlag, VideoRecord, new_id

DEFAULT_CACHE_DIR = Path(os.environ.get("HIGEN_STUDIO_CACHE", Path.home() / ".cache" / "higen-studio"))
MAX_SEED = 2**31 - 1  # what a browser's number input and every generator take
MAX_CANDIDATES = 4
MAX_MOTION_PROMPTS = 4
MAX_STEPS = 200  # an API caller could otherwise hold the GPU for hours
MAX_GUIDANCE = 100.0  # the most a model folder may recommend (higen_core.settings)
MAX_UPLOAD_BYTES = 20 * 2**20
MAX_UPLOAD_PIXELS = 40_000_000
UPLOAD_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "BMP": "BMP"}
FRAMINGS = ("crop", "fit")  # how an uploaded image meets the model's frame: trimmed to fill it, or shown whole
# A ZeroGPU slot is reserved for the estimated duration; these figures are for the released model (32 frames at
# 256x448) on a ZeroGPU H200 slice, with room to spare.
GPU_SECONDS_MAX = 300
# A live preview every this share of an animation's steps (and never after the last: the video itself follows).
PREVIEW_EVERY = 0.2
# Previews are enlarged to at least this many pixels on their shorter side, so that a small model's show.
PREVIEW_MIN_SIDE = 128
FACTOR_TEXTS = ("1", "2", "3", "4")  # the interpolation and upscaling factors, as text
OOM_MESSAGE = ("The GPU ran out of memory. Enable CPU offload or VAE tiling in the Model panel, or ask for fewer "
               "frames, fewer motion prompts or fewer candidates.")


class _Stopped(Exception):
    """Raised from the step callback to leave the denoising loop at once; `partial` is what the job keeps (None:
    nothing)."""

    def __init__(self, partial=None):
        super().__init__()
        self.partial = partial


@dataclass
class PriorBatch:
    priors: list[PriorRecord]
    seed: int  # candidate k used seed + k


@dataclass
class AnimateResult:
    videos: list[VideoRecord]
    seed: int  # every video of the batch starts from this seed's noise, so they differ only by their prompt
    partial: bool = False  # stopped: the videos are the clean prediction at the step it stopped after


@dataclass
class PriorRequest:
    """Step 1's values, checked, with the model's defaults filled in and the seed picked."""

    prompt: str
    negative_prompt: str
    seeds: list[int]  # one per candidate
    steps: int
    guidance: float


@dataclass
class AnimateRequest:
    """Step 2's values, checked, with the model's defaults filled in and the seed picked."""

    prior: PriorRecord
    prompts: list[str]
    motion_factor: float
    appearance_factor: float
    num_frames: int
    steps: int
    guidance: float
    seed: int


def zero_gpu(job, duration):
    """`spaces.GPU(job, duration=...)`. Without the `spaces` package, or off ZeroGPU (where spaces.GPU returns the
    function unchanged), the job runs as it is."""
    try:
        import spaces
    except ImportError:
        return job
    return spaces.GPU(job, duration=duration)


def prior_gpu_seconds(prompt, negative_prompt, seeds, steps, guidance, stop, progress) -> int:
    return int(min(GPU_SECONDS_MAX, 10 + 0.1 * steps * len(seeds)))


def animate_gpu_seconds(prior_latents, prompts, negative_prompt, motion_factor, appearance_factor, num_frames, steps,
                        guidance, seed, stop, progress, preview=None) -> int:
    return int(min(GPU_SECONDS_MAX, 15 + 0.03 * num_frames * steps * len(prompts)))


def encode_gpu_seconds(image) -> int:
    return 10


def _load_pipeline(source: str, device: torch.device, dtype: torch.dtype) -> HiGenPipeline:
    """`higen_core.load_pipeline`, with its one-line refusals raised as StudioError for the UI and app.py to show."""
    try:
        return load_pipeline(source, device=device, dtype=dtype)
    except PipelineLoadError as e:
        raise StudioError(str(e)) from None


def convert_vgen_cached(checkpoint: str | Path, base: str, cache_dir: Path) -> Path:
    """The released VGen checkpoint + an SD 2.x base, converted into a pipeline folder once and then reused: the
    folder name is keyed by the checkpoint's path, size and time and by the base. Both are the caller's to check
    (`ModelSources`): this reads them."""
    ckpt = Path(checkpoint).expanduser().resolve()
    if not ckpt.is_file():
        raise StudioError("Give the VGen checkpoint as a file.")
    stat = ckpt.stat()
    key = hashlib.sha256(f"{ckpt}|{stat.st_size}|{stat.st_mtime_ns}|{base}".encode()).hexdigest()[:16]
    out = cache_dir / f"vgen-{ckpt.stem}-{key}"
    if (out / "model_index.json").is_file():
        return out
    from higen_core.convert import convert_to_pipeline

    # Written aside and renamed, so that a conversion cut short is never taken for a finished one.
    partial = out.with_name(f"{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        convert_to_pipeline(str(ckpt), base, str(partial))
    except Exception as e:
        shutil.rmtree(partial, ignore_errors=True)
        # The details (paths, library messages) go to the operator's log, not to the page.
        traceback.print_exc(file=sys.stderr)
        raise StudioError(f"Could not convert the checkpoint with that base ({type(e).__name__}); the server's log "
                          f"has the details.") from None
    os.replace(partial, out)
    return out


def parse_motion_prompts(value) -> list[str]:
    """One prompt per line of a string, or a list of strings (e.g. a Dataframe column); blank ones dropped. Each
    line is checked like a prompt."""
    if isinstance(value, (list, tuple)):
        lines = list(value)
    else:
        lines = inputs.text(value, inputs.MOTION_TEXT, inputs.MAX_MOTION_TEXT_CHARS).splitlines()
    prompts = [inputs.text(line, "A motion prompt") for line in lines]
    return [prompt for prompt in prompts if prompt]


def validate_image(path) -> PIL.Image.Image:
    """An uploaded file as an RGB image, or a StudioError saying what is wrong with it."""
    if not path:
        raise StudioError("Choose an image file to use as the prior.")
    size = Path(path).stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise StudioError(f"The image is {size / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB.")
    try:
        with PIL.Image.open(path) as image:
            if image.format not in UPLOAD_FORMATS:
                raise StudioError(f"{image.format} images are not supported: use {', '.join(UPLOAD_FORMATS.values())}.")
            if image.width * image.height > MAX_UPLOAD_PIXELS:
                raise StudioError(f"The image is {image.width}x{image.height}; the limit is "
                                  f"{MAX_UPLOAD_PIXELS // 1_000_000} megapixels.")
            image.load()  # open() reads the header only; this decodes every pixel
            return image.convert("RGB")
    except (PIL.UnidentifiedImageError, PIL.Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        raise StudioError("The file is not a readable image: use "
                          f"{', '.join(UPLOAD_FORMATS.values())}.") from None


def frame_image(image: PIL.Image.Image, width: int, height: int, framing: str, position: float) -> PIL.Image.Image:
    """`image` in the aspect of width x height: "crop" keeps the largest such window, placed at `position` (0: left or
    top, 1: right or bottom) along the side it trims; "fit" pads the whole image with black bars, centred."""
    target = width / height
    w, h = image.size
    if framing == "fit":
        size = (max(w, round(h * target)), max(h, round(w / target)))
        return PIL.ImageOps.pad(image, size, color=(0, 0, 0))
    if w / h > target:  # wider than the frame: trim the sides
        kept = round(h * target)
        left = round(position * (w - kept))
        return image.crop((left, 0, left + kept, h))
    kept = round(w / target)
    top = round(position * (h - kept))
    return image.crop((0, top, w, top + kept))


def time_left(elapsed: float, done: int, total: int) -> str:
    """"about N s left" (or min) after `done` of `total` steps took `elapsed` seconds; "" once all are done."""
    if done >= total:
        return ""
    seconds = elapsed / done * (total - done)
    return f"about {seconds:.0f} s left" if seconds < 90 else f"about {seconds / 60:.0f} min left"


def shown_name(source: str, parts: int = 1) -> str:
    """How a model or LoRA is named on the page and in every file the studio writes: a folder or file by the last
    `parts` parts of its path, never its whole path on the server (which would tell visitors how the server is laid
    out); "tiny" and hub ids as they are. A training run's pipeline (RUN/final) is named with its run: every run's
    is called "final"."""
    path = Path(source).expanduser()
    if not path.exists():
        return source
    path = path.resolve()
    return "/".join(path.parts[-max(parts, 2 if path.name == "final" else 1):])


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class StudioModel:
    """A loaded HiGenPipeline, its device and dtype, and the studio's handlers."""

    def __init__(self, pipe: HiGenPipeline, name: str, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, is_tiny: bool = False, cache_dir: str | Path | None = None,
                 sources: ModelSources | None = None):
        """`sources`: what "Load model" may read (default: the folder `name`, if it is one, and `cache_dir`)."""
        # One GPU job at a time, even if two callers get past the queue (tests, example caching, a model load).
        self._lock = threading.Lock()
        self.cache_dir = Path(cache_dir) if cache_dir else DEFAULT_CACHE_DIR
        self.sources = sources or ModelSources.default(name, self.cache_dir)
        self._install(pipe, name, torch.device(device), dtype, is_tiny)
        self._prior_on_gpu = zero_gpu(self._prior_job, prior_gpu_seconds)
        self._animate_on_gpu = zero_gpu(self._animate_job, animate_gpu_seconds)
        self._encode_on_gpu = zero_gpu(self._encode_job, encode_gpu_seconds)

    @classmethod
    def load(cls, source: str, device: str | None = None, dtype: str | None = None,
             cache_dir: str | Path | None = None, sources: ModelSources | None = None) -> StudioModel:
        """`source`: a pipeline folder, a hub id or "tiny". `device` (default: cuda if available) and `dtype` (default:
        float16 on a GPU, float32 on the CPU) as `higen_core.load_pipeline` takes them."""
        try:
            torch_device = resolve_device(device)
            torch_dtype = resolve_dtype(dtype, torch_device)
        except PipelineLoadError as e:
            raise StudioError(str(e)) from None
        pipe = _load_pipeline(source, torch_device, torch_dtype)
        return cls(pipe, source, torch_device, torch_dtype, is_tiny=source == TINY, cache_dir=cache_dir,
                   sources=sources)

    def _install(self, pipe: HiGenPipeline, name: str, device: torch.device, dtype: torch.dtype, is_tiny: bool):
        pipe.set_progress_bar_config(disable=True)  # the UI shows progress; tqdm would only fill the server log
        # Cast only when needed: a loaded pipeline is already in `dtype`, and diffusers warns about casting twice.
        self.pipe = pipe.to(device=device) if pipe.dtype == dtype else pipe.to(device=device, dtype=dtype)
        self.name = name
        self.shown_name = shown_name(name)  # what the page and the files call it
        self.device = device
        self.dtype = dtype
        self.is_tiny = is_tiny
        self.offload = "none"  # one of OFFLOAD_MODES
        self.vae_tiling = False
        self.lora: dict | None = None  # {"lora": source, "lora_scale": scale} while a LoRA is applied

    # ------------------------------------------------------------------------------------------------------------
    # What the UI shows about the model: all of it is what the model's folder recommends (`pipe.settings`).
    @property
    def settings(self) -> HiGenSettings:
        return self.pipe.settings

    @property
    def motion_factor_range(self) -> tuple[float, float]:
        return self.settings.motion_factor_range

    @property
    def default_motion_factor(self) -> float:
        return self.settings.motion_factor

    @property
    def default_appearance_factor(self) -> float:
        return self.settings.appearance_factor

    @property
    def default_guidance(self) -> float:
        return self.settings.guidance_scale

    @property
    def default_steps(self) -> int:
        return self.settings.num_inference_steps

    @property
    def fps(self) -> float:
        return self.settings.fps

    @property
    def example_prompts(self) -> list[str]:
        """Step 1's examples; empty when the model declares none."""
        return list(self.settings.example_prompts)

    @property
    def motion_examples(self) -> list[list]:
        """Step 2's examples as [motion prompts (one per line), γm] rows; empty when the model declares none."""
        return [["\n".join(example.motion_prompts), example.motion_factor]
                for example in self.settings.motion_examples]

    @property
    def motion_example_labels(self) -> list[str]:
        """One label per row of `motion_examples`: a table cell would run a row's prompts together on one line."""
        return [example.label for example in self.settings.motion_examples]

    @property
    def num_frames(self) -> int:
        return int(self.pipe.unet.config.num_frames)

    @property
    def max_frames(self) -> int:
        return int(self.pipe.unet.config.appearance_width)

    @property
    def duration_range(self) -> tuple[float, float, float]:
        """(shortest, longest, step) of a video in seconds: 2 to `max_frames` frames at the model's `fps`."""
        return 2 / self.fps, self.max_frames / self.fps, 1 / self.fps

    @property
    def default_duration(self) -> float:
        return self.num_frames / self.fps

    def frames_for_duration(self, seconds) -> int:
        """A duration in seconds as the frame count that plays that long at the model's fps (N frames: N / fps s)."""
        low, high, _ = self.duration_range
        seconds = inputs.number(self.default_duration if seconds is None else seconds, "Duration (seconds)", low,
                                high)
        return min(max(round(seconds * self.fps), 2), self.max_frames)

    @property
    def default_quality(self) -> int:
        return video_io.MP4_CRF

    @property
    def limits(self) -> dict:
        return {"max_seed": MAX_SEED, "max_candidates": MAX_CANDIDATES, "max_motion_prompts": MAX_MOTION_PROMPTS,
                "max_steps": MAX_STEPS}

    def unknown_words(self, *texts: str) -> list[str]:
        """The words of `texts` that the model's declared vocabulary lacks, once each ([] when it declares none)."""
        return list(dict.fromkeys(word for text in texts for word in self.settings.unknown_words(text)))

    def describe(self) -> dict:
        return {"model": self.shown_name, "device": str(self.device),
                "dtype": str(self.dtype).removeprefix("torch."), "offload": self.offload,
                "vae_tiling": self.vae_tiling, "tiny": self.is_tiny, "lora": self.lora}

    # ------------------------------------------------------------------------------------------------------------
    # Model panel
    def load_other(self, source: str = "", vgen_checkpoint: str = "", base: str = "") -> dict:
        """Replace the pipeline in place (the UI keeps its reference to this object): from "tiny" or what
        `self.sources` allows, or from the released VGen checkpoint + base, converted once into the cache folder."""
        source = inputs.text(source, "The pipeline folder", multiline=False)
        vgen_checkpoint = inputs.text(vgen_checkpoint, "The VGen checkpoint", multiline=False)
        base = inputs.text(base, "The base model", multiline=False)
        if vgen_checkpoint:
            if not base:
                raise StudioError("Give the base model (an SD 2.x folder) to take the text encoder and VAE from.")
            checkpoint = self.sources.checkpoint(vgen_checkpoint)
            source = str(convert_vgen_cached(checkpoint, self.sources.base(base), self.cache_dir))
        elif source:
            source = self.sources.pipeline(source)
        else:
            raise StudioError("Give a pipeline folder, or a VGen checkpoint and its base.")
        # Loaded on the CPU: it moves to the device once the old model has left it.
        pipe = _load_pipeline(source, torch.device("cpu"), self.dtype)
        with self._lock:
            # The old model leaves the GPU before the new one arrives: both at once may not fit.
            self.pipe.remove_all_hooks()
            self.pipe.to("cpu")
            self._free_memory()
            self._install(pipe, source, self.device, self.dtype, is_tiny=source == TINY)
        return self.describe()

    def apply_lora(self, source: str = "", scale=1.0) -> dict:
        """Apply a LoRA (the DIR/lora folder of a LoRA training run, its file, or an allowed hub id) at `scale`, in
        place of the one before; an empty `source` removes it. Only what `self.sources` allows is read."""
        source = inputs.text(source, "The LoRA", multiline=False)
        scale = inputs.number(scale, "The LoRA scale", 0.0, 2.0)
        with self._lock:
            if not source:
                if self.lora is not None:
                    self.pipe.unload_lora_weights()
                self.lora = None
                return self.describe()
            try:
                apply_lora(self.pipe, self.sources.lora(source), scale)
            except ValueError as e:
                raise StudioError(str(e)) from None
            self.lora = {"lora": shown_name(source, parts=2), "lora_scale": scale}
        return self.describe()

    def set_offload(self, mode: str) -> dict:
        """CPU offload, one of OFFLOAD_MODES: "none"; "model", each component on the GPU only while it runs (slower,
        much less memory); "sequential", each layer (slowest, least memory)."""
        mode = inputs.choice(mode, "CPU offload", OFFLOAD_MODES)
        with self._lock:
            if mode != self.offload:
                if self.device.type != "cuda":
                    raise StudioError(f"CPU offload needs a GPU; this model runs on {self.device}.")
                self.pipe.remove_all_hooks()
                if mode == "model":
                    self.pipe.enable_model_cpu_offload(device=self.device)
                elif mode == "sequential":
                    self.pipe.enable_sequential_cpu_offload(device=self.device)
                else:
                    self.pipe.to(self.device)
                self.offload = mode
        return self.describe()

    def set_vae_tiling(self, enabled: bool) -> dict:
        """The VAE decodes large frames in overlapping tiles: much less memory for the last step, at the cost of
        some time (frames smaller than a tile are decoded whole either way)."""
        enabled = inputs.flag(enabled, "VAE tiling")
        with self._lock:
            if enabled:
                self.pipe.vae.enable_tiling()
            else:
                self.pipe.vae.disable_tiling()
            self.vae_tiling = enabled
        return self.describe()

    @staticmethod
    def _free_memory():
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------------------------------------------------
    # GPU jobs: picklable arguments in, ("ok", value) | ("stopped", None) | ("error", text) out, because across a
    # ZeroGPU worker only plain values come back, not our exceptions.
    @staticmethod
    def _step_callback(stop: StopFlag | None, progress, total: int, desc: str, seen: dict | None = None,
                       preview=None):
        """The pipeline's step callback: reports progress with the time left, keeps the latest clean prediction in
        `seen` (what Stop keeps), calls `preview(i, denoised)` every `PREVIEW_EVERY` of the steps, and leaves the
        loop on Stop."""
        every = max(1, round(total * PREVIEW_EVERY))
        started = time.monotonic()

        def callback(pipe, i, t, tensors):
            if seen is not None:
                seen.update(denoised=tensors["denoised"], steps_done=i + 1)
            if stop is not None and stop.is_set():
                raise _Stopped
            if progress is not None:
                left = time_left(time.monotonic() - started, i + 1, total)
                progress((i + 1, total), desc=f"{desc} · {left}" if left else desc)
            if preview is not None and (i + 1) % every == 0 and i + 1 < total:
                preview(i + 1, tensors["denoised"])
            return {}

        return callback

    def _outcome(self, compute):
        try:
            return "ok", compute()
        except _Stopped as stopped:
            return "stopped", stopped.partial
        except torch.OutOfMemoryError:
            self._free_memory()
            return "error", OOM_MESSAGE
        except ValueError as e:  # the pipeline's checks: their text says what to change
            return "error", str(e)

    def _prior_job(self, prompt, negative_prompt, seeds, steps, guidance, stop, progress):
        def compute():
            out = self.pipe.generate_prior(
                prompt, negative_prompt, num_images_per_prompt=len(seeds), num_inference_steps=steps,
                guidance_scale=guidance, generator=[torch.Generator().manual_seed(s) for s in seeds],
                output_type="pil", callback_on_step_end=self._step_callback(stop, progress, steps, "Spatial prior"))
            return out.latents.cpu(), out.images

        return self._outcome(compute)

    def _animate_job(self, prior_latents, prompts, negative_prompt, motion_factor, appearance_factor, num_frames,
                     steps, guidance, seed, stop, progress, preview=None):
        """(B, F, H, W, 3) frames in [0, 1]; stopped, ("stopped", (frames of the clean prediction, steps done))."""
        seen = {}

        def compute():
            try:
                out = self.pipe.animate(
                    prior_latents, prompts, negative_prompt, motion_factor=motion_factor,
                    appearance_factor=appearance_factor, num_frames=num_frames, num_inference_steps=steps,
                    guidance_scale=guidance, generator=[torch.Generator().manual_seed(seed) for _ in prompts],
                    output_type="np", callback_on_step_end_tensor_inputs=["denoised"],
                    callback_on_step_end=self._step_callback(stop, progress, steps, "Animating", seen, preview))
            except _Stopped:
                if "denoised" not in seen:
                    raise
                # Stop keeps what was made: the clean video as the last finished step predicts it.
                frames = self.pipe.video_processor.postprocess_video(
                    self.pipe.decode_latents(seen["denoised"]), output_type="np")
                raise _Stopped((frames, seen["steps_done"])) from None
            finally:
                if preview is not None:
                    preview.close()  # in the process that wrote it (a ZeroGPU worker's is not this one)
            return out.frames

        return self._outcome(compute)

    def _encode_job(self, image):
        def compute():
            latents = self.pipe.encode_prior_image(image)
            pixels = self.pipe.decode_latents(latents[:, :, None])[:, :, 0]  # what the model will see
            return latents.cpu(), self.pipe.image_processor.postprocess(pixels, output_type="pil")[0]

        return self._outcome(compute)

    def _run(self, job, *args, stop: StopFlag | None = None):
        with self._lock:
            if stop is not None:
                # Cleared only once the GPU is ours: a Stop pressed while this job waited was for the job before.
                stop.clear()
            status, value = job(*args)
            if status == "stopped":
                stop.clear()  # consumed: the session is ready for its next job
        if status == "stopped":
            raise JobStopped(partial=value)
        if status == "error":
            raise StudioError(value)
        return value

    # ------------------------------------------------------------------------------------------------------------
    # Handlers
    @staticmethod
    def pick_seed(seed, randomize: bool) -> int:
        """`seed` as given, or a random one when `randomize` is set or `seed` is None."""
        if inputs.flag(randomize, "Randomize seed") or seed is None:
            return secrets.randbelow(MAX_SEED + 1)
        return inputs.whole_number(seed, "Seed", 0, MAX_SEED)

    def _steps(self, steps) -> int:
        return inputs.whole_number(self.default_steps if steps is None else steps, "Steps", 1, MAX_STEPS)

    def _guidance(self, guidance) -> float:
        return inputs.number(self.default_guidance if guidance is None else guidance, "Guidance", 0, MAX_GUIDANCE)

    def _settings(self, kind: str, record_id: str, **values) -> dict:
        return {"studio": "HiGen Studio", "kind": kind, "id": record_id, "model": self.shown_name,
                **(self.lora or {}),
                **values, "created": _now()}

    def check_prior_request(self, prompt, negative_prompt="", seed=0, randomize_seed=False, steps=None,
                            guidance=None, num_candidates=1) -> PriorRequest:
        """Step 1's values checked, before any GPU time is spent on them; StudioError names the first bad one."""
        prompt = inputs.text(prompt, "The prompt")
        if not prompt:
            raise StudioError("Enter a prompt for the spatial prior.")
        negative_prompt = inputs.text(negative_prompt, "The negative prompt")
        count = inputs.whole_number(num_candidates, "Candidates", 1, MAX_CANDIDATES)
        steps = self._steps(steps)
        guidance = self._guidance(guidance)
        seed = self.pick_seed(seed, randomize_seed)
        return PriorRequest(prompt, negative_prompt, [(seed + k) % (MAX_SEED + 1) for k in range(count)], steps,
                            guidance)

    def generate_prior(self, session: Session, prompt: str, negative_prompt: str = "", seed=0,
                       randomize_seed: bool = False, steps=None, guidance=None, num_candidates=1,
                       progress=None) -> PriorBatch:
        """Step 1: `num_candidates` spatial priors for `prompt` in one batch (candidate k from seed + k). The first
        becomes the current prior; `choose_prior` picks another. `steps` or `guidance` None: the model's
        `default_steps` or `default_guidance`."""
        request = self.check_prior_request(prompt, negative_prompt, seed, randomize_seed, steps, guidance,
                                           num_candidates)
        prompt, negative_prompt, seeds, steps = request.prompt, request.negative_prompt, request.seeds, request.steps
        latents, images = self._run(self._prior_on_gpu, prompt, negative_prompt, seeds, steps, request.guidance,
                                    session.stop, progress, stop=session.stop)

        priors = []
        for k, (latent, image) in enumerate(zip(latents, images)):
            prior_id = new_id()
            settings = self._settings(
                "prior", prior_id, source="generated", prompt=prompt, negative_prompt=negative_prompt,
                seed=seeds[k], num_inference_steps=steps, guidance_scale=request.guidance, candidate=k,
                candidates=len(seeds))
            priors.append(self._save_prior(session, prior_id, image, settings, latent[None].clone()))
        session.candidates = [prior.id for prior in priors]
        session.make_current(priors[0].id, remember=False)
        return PriorBatch(priors, seeds[0])

    def _save_prior(self, session: Session, prior_id: str, image, settings: dict, latents) -> PriorRecord:
        path = session.folder / f"prior-{prior_id}.png"
        video_io.export_png(image, path)
        video_io.write_settings_json(settings, path.with_suffix(".json"))
        prior = PriorRecord(prior_id, path, settings, latents)
        session.add_prior(prior)
        return prior

    @staticmethod
    def candidate_index(session: Session, index) -> int:
        """A candidate's 0-based place among the session's last "Generate prior" candidates, checked."""
        if not session.candidates:
            raise StudioError("There are no candidates yet: generate priors in step 1 first.")
        return inputs.whole_number(index, "The candidate", 0, len(session.candidates) - 1)

    @staticmethod
    def prior_id_from_path(path) -> str | None:
        """The id in a prior's file name ("prior-<id>.png"), which survives Gradio copying the file to its cache."""
        name = Path(str(path)).name
        return name[len("prior-"):-len(".png")] if name.startswith("prior-") and name.endswith(".png") else None

    def choose_prior(self, session: Session, image_path, prompt: str = "") -> PriorRecord:
        """Make a gallery image the current prior: one of this session's priors by its file name, or else (e.g. a
        cached example's picture) the image itself, encoded like an upload."""
        prompt = inputs.text(prompt, "The prompt")
        prior_id = self.prior_id_from_path(image_path)
        if prior_id in session.priors:
            return session.make_current(prior_id)
        return self.use_image(session, image_path, prompt=prompt, source="gallery")

    def use_image(self, session: Session, path, prompt: str = "", source: str = "upload", framing: str = "crop",
                  position=0.5) -> PriorRecord:
        """"Use my own image": a validated image, framed to the model's shape and encoded by the VAE, becomes the
        current prior. `framing` "crop" fills the frame and trims what sticks out, from `position` 0 (keep the left or
        top) to 1 (keep the right or bottom); "fit" shows all of it, with black bars. `prompt` (optional) is its
        default motion prompt."""
        prompt = inputs.text(prompt, "The prompt")
        framing = inputs.choice(framing, "Framing", FRAMINGS)
        position = inputs.number(position, "The crop position", 0.0, 1.0)
        height, width = (size * self.pipe.vae_scale_factor for size in self.pipe.unet.config.sample_size)
        image = frame_image(validate_image(path), width, height, framing, position)
        latents, preview = self._run(self._encode_on_gpu, image)
        prior_id = new_id()
        settings = self._settings("prior", prior_id, source=source, file=Path(str(path)).name, prompt=prompt,
                                  negative_prompt="", framing=framing,
                                  **({"crop_position": position} if framing == "crop" else {}))
        prior = self._save_prior(session, prior_id, preview, settings, latents)
        return session.make_current(prior.id)

    def check_animate_request(self, session: Session, motion_prompts, motion_factor=None, appearance_factor=None,
                              num_frames=None, steps=None, guidance=None, seed=0,
                              randomize_seed: bool = False, prior_id: str | None = None) -> AnimateRequest:
        """Step 2's values checked, and the prior (the session's current one, or its prior `prior_id`: a queued job
        animates the prior current when it was added), before any GPU time is spent on them."""
        prompts = parse_motion_prompts(motion_prompts)
        if len(prompts) > MAX_MOTION_PROMPTS:
            raise StudioError(f"At most {MAX_MOTION_PROMPTS} motion prompts at once; got {len(prompts)}.")
        motion_factor = inputs.number(self.default_motion_factor if motion_factor is None else motion_factor,
                                      "Motion factor γm", 0, MAX_MOTION_FACTOR)
        appearance_factor = inputs.number(
            self.default_appearance_factor if appearance_factor is None else appearance_factor,
            "Appearance factor γa", 0, 1)
        num_frames = inputs.whole_number(self.num_frames if num_frames is None else num_frames, "Frames", 2,
                                         self.max_frames)
        steps = self._steps(steps)
        guidance = self._guidance(guidance)
        seed = self.pick_seed(seed, randomize_seed)
        prior = session.current_prior if prior_id is None else session.priors.get(prior_id)
        if prior is None:
            raise StudioError("There is no spatial prior yet: generate one in step 1 (and click the candidate you "
                              "like) or upload an image." if prior_id is None else "That prior is gone.")
        prompts = prompts or ([prior.prompt] if prior.prompt else [])
        if not prompts:
            raise StudioError("Enter at least one motion prompt (one per line).")
        return AnimateRequest(prior, prompts, motion_factor, appearance_factor, num_frames, steps, guidance, seed)

    def check_output_request(self, interpolation=1, upscale=1, quality=None) -> dict:
        """The post-processing of step 2's videos, checked: {interpolation, upscale, quality, fps (of the files)}.
        `quality` None: `default_quality`."""
        # Gradio's API page lists a dropdown's values as text ('1' to '4'): those are taken as what they say.
        interpolation, upscale = (int(v) if v in FACTOR_TEXTS else v for v in (interpolation, upscale))
        interpolation = inputs.whole_number(interpolation, "Frame interpolation", 1, 4)
        upscale = inputs.whole_number(upscale, "Upscaling", 1, 4)
        quality = inputs.whole_number(self.default_quality if quality is None else quality, "Quality (CRF)", 0, 51)
        return {"interpolation": interpolation, "upscale": upscale, "quality": quality,
                "fps": self.fps * interpolation}

    def animate(self, session: Session, motion_prompts, motion_factor=None, appearance_factor=None,
                num_frames=None, steps=None, guidance=None, seed=0, randomize_seed: bool = False,
                progress=None, interpolation=1, upscale=1, quality=None,
                prior_id: str | None = None) -> AnimateResult:
        """Step 2: animate the current prior with every motion prompt (one per line; default: the prior's prompt)
        in one batch. The prior is reused as it is: no spatial reasoning runs again. None for a factor, the frames,
        the steps or the guidance: the model's default (`default_motion_factor`, `num_frames`, ...). The videos play
        at the model's `fps`, times `interpolation` (motion-compensated in-between frames, 1 to 4), `upscale` times
        larger (Lanczos, 1 to 4), encoded at x264 CRF `quality` (0 to 51, lower is better; None: 17). `prior_id`:
        another of the session's priors than the current one."""
        output = self.check_output_request(interpolation, upscale, quality)
        r = self.check_animate_request(session, motion_prompts, motion_factor, appearance_factor, num_frames, steps,
                                       guidance, seed, randomize_seed, prior_id)
        prior, prompts, motion_factor, appearance_factor = r.prior, r.prompts, r.motion_factor, r.appearance_factor
        num_frames, steps, guidance, seed = r.num_frames, r.steps, r.guidance, r.seed
        fps = self.fps
        negative_prompt = prior.settings.get("negative_prompt", "")
        preview = self._preview_writer(session, prior, steps)
        partial = None
        try:
            videos = self._run(self._animate_on_gpu, prior.latents, prompts, negative_prompt, motion_factor,
                               appearance_factor, num_frames, steps, guidance, seed, session.stop, progress, preview,
                               stop=session.stop)
        except JobStopped as stopped:
            if stopped.partial is None:
                raise
            videos, steps_done = stopped.partial
            partial = {"steps_done": steps_done, "num_inference_steps": steps}
        finally:
            shutil.rmtree(preview.folder, ignore_errors=True)

        records = []
        for index, (prompt, frames) in enumerate(zip(prompts, videos)):
            video_id = new_id()
            settings = self._settings(
                "video", video_id, motion_prompt=prompt, negative_prompt=negative_prompt,
                motion_factor=motion_factor, appearance_factor=appearance_factor, num_frames=num_frames,
                num_inference_steps=steps, guidance_scale=guidance, seed=seed, fps=fps,
                batch={"index": index, "motion_prompts": prompts}, prior={"id": prior.id, **prior.settings},
                output=output, **({"partial": partial} if partial else {}))
            stem = session.folder / f"video-{video_id}"
            paths = [stem.with_suffix(ext) for ext in (".mp4", ".gif", ".json")]
            frames = video_io.upscale_frames(video_io.interpolate_frames(frames, fps, output["interpolation"]),
                                             output["upscale"])
            video_io.export_mp4(frames, paths[0], fps=output["fps"], metadata=settings, crf=output["quality"])
            video_io.export_gif(frames, paths[1], fps=output["fps"])
            video_io.write_settings_json(settings, paths[2])
            records.append(VideoRecord(video_id, prior.id, *paths, settings))
        session.remember(prior)
        session.add_videos(records)
        return AnimateResult(records, seed, partial=partial is not None)

    def _preview_writer(self, session: Session, prior: PriorRecord, steps: int) -> PreviewWriter:
        """The live preview of an animation of `prior`: its map fitted to the prior's own picture."""
        with PIL.Image.open(prior.image_path) as image:
            weight, bias = latent_rgb_projection(prior.latents.float().cpu(), image)
        scale = max(1, -(-PREVIEW_MIN_SIDE // min(prior.latents.shape[2:])))
        return PreviewWriter(session.preview_folder, weight, bias, steps, self.fps, scale)

    @staticmethod
    def request_stop(session: Session) -> None:
        """Stop: the running job of this session leaves its loop after the current step. An animation keeps the
        videos its last step predicts, marked partial; a prior job keeps nothing."""
        session.stop.set()

    def remix(self, session: Session, record_id: str) -> tuple[str, dict]:
        """"Send back to inputs": ("prior", step-1 values) or ("video", step-2 values) of a history item; a video's
        prior becomes the current prior again, so that it can be animated anew."""
        record = session.find(record_id) if isinstance(record_id, str) else None
        if record is None:
            raise StudioError("That history item is gone (the session was reset): pick another one.")
        s = record.settings
        if isinstance(record, PriorRecord):
            session.make_current(record.id)
            return "prior", {"prompt": s.get("prompt", ""), "negative_prompt": s.get("negative_prompt", ""),
                             "seed": s.get("seed"), "steps": s.get("num_inference_steps"),
                             "guidance": s.get("guidance_scale")}
        if record.prior_id in session.priors:
            session.make_current(record.prior_id)
        return "video", {"motion_prompts": s["motion_prompt"], "motion_factor": s["motion_factor"],
                         "appearance_factor": s["appearance_factor"], "num_frames": s["num_frames"],
                         "duration": s["num_frames"] / s["fps"],
                         "steps": s["num_inference_steps"], "guidance": s["guidance_scale"], "seed": s["seed"],
                         **{name: s["output"][name] for name in ("interpolation", "upscale", "quality")}}
