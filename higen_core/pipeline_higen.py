# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""HiGen's two-stage text-to-video generation as a diffusers pipeline.

    pipe = higen_core.load_pipeline("assets/shapes-model")                 # or HiGenPipeline.from_pretrained
    prior = pipe.generate_prior("a red circle on a cyan background")      # spatial reasoning: one latent image
    video = pipe.animate(prior, ["a red circle moves left quickly on a cyan background",
                                 "a red circle grows quickly on a cyan background"],
                         motion_factor=17)                                # temporal reasoning, both in one batch
    video.frames[0]  # list of PIL images; unset factors, steps and guidance come from `pipe.settings`

`pipe(prompt)` runs both steps. One prior can be animated again with other motion prompts or factors without
repeating spatial reasoning.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch

from diffusers import DDIMScheduler, DiffusionPipeline, DPMSolverMultistepScheduler
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput, logging
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor

from .conditioning import appearance_matrix
from .lora import HiGenLoraLoaderMixin
from .settings import HiGenSettings
from .unet_higen import MAX_PERIOD, HiGenUNet3DModel

logger = logging.get_logger(__name__)

# The official inference adds per-frame, per-channel offset noise of this strength to the video's starting noise.
OFFSET_NOISE_STRENGTH = 0.1
OUTPUT_TYPES = ("pil", "np", "pt", "latent")
_TEXT_CACHE_SIZE = 32


def default_scheduler() -> DDIMScheduler:
    """The official HiGen sampler: DDIM with v-prediction on SD's scaled-linear betas (0.00085-0.012) rescaled to zero
    terminal SNR, "leading" timesteps shifted by one (751, 501, 251, 1 for 4 steps), and the last step landing on
    alphas_cumprod[0]. Any diffusers scheduler built on the same betas can replace it."""
    return DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="leading", steps_offset=1,
        set_alpha_to_one=False, clip_sample=False,
    )


def dpm_scheduler() -> DPMSolverMultistepScheduler:
    """The opt-in fast sampler (it changes the result): DPM-Solver++ (2M) on the official betas and v-prediction, near
    DDIM-50 in 20-25 steps. Its timesteps are "trailing" (999, 949, ... for 20 steps): with few steps the first one
    must be the schedule's last, where the zero-terminal-SNR latents are pure noise, as the starting noise is.
    Use it with `pipe.scheduler = dpm_scheduler()`."""
    return DPMSolverMultistepScheduler.from_config(default_scheduler().config, algorithm_type="dpmsolver++",
                                                   solver_order=2, timestep_spacing="trailing", steps_offset=0)


@dataclass
class HiGenPriorOutput(BaseOutput):
    """`latents` (B, C, H, W): the spatial priors; `images`: their previews (PIL list, np, pt, or None for latents)."""

    latents: torch.Tensor
    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor | None


@dataclass
class HiGenVideoOutput(BaseOutput):
    """`latents` (B, C, F, H, W); `frames`: per video a list of PIL images, or (B, F, H, W, 3) np, (B, F, 3, H, W)
    pt, or the latents for output_type="latent"."""

    latents: torch.Tensor
    frames: list[list[PIL.Image.Image]] | np.ndarray | torch.Tensor


@dataclass
class HiGenPipelineOutput(HiGenVideoOutput):
    """A whole generation: the video and the spatial prior latents (B, C, H, W) it was animated from."""

    prior_latents: torch.Tensor | None = None


def text_states(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    """(N, L, D) last hidden states of the text encoder for `prompts`, padded to the tokenizer's length. Training
    calls this too, so that the model is trained on exactly the text states it is sampled with."""
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder(ids.to(text_encoder.device))[0]


def _as_list(value, name: str) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, torch.Tensor) and value.ndim > 0:
        return value.tolist()
    if isinstance(value, np.ndarray) and value.ndim > 0:
        return value.tolist()
    if value is None:
        raise ValueError(f"{name} must be given.")
    return [value]


class HiGenPipeline(DiffusionPipeline, HiGenLoraLoaderMixin):
    r"""
    Text-to-video with HiGen: spatial reasoning makes a spatial prior (`generate_prior`), temporal reasoning animates
    it (`animate`), `__call__` does both.

    Args:
        vae: `AutoencoderKL` (optional: without it, use `output_type="latent"`).
        text_encoder: CLIP text model whose last hidden state conditions the UNet (optional with `prompt_embeds`).
        tokenizer: its tokenizer (optional with `prompt_embeds`).
        unet: `HiGenUNet3DModel`.
        scheduler: a diffusers scheduler; `default_scheduler()` is the official sampler.
        settings: what the model recommends (`higen_core.settings.HiGenSettings` or its dict; saved in
            `model_index.json`): the defaults of every call's γm, γa, guidance and steps. None: the paper's values.

    LoRA adapters load as in diffusers (`load_lora_weights`, `set_adapters`, `unload_lora_weights`: higen_core.lora).
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["vae", "text_encoder", "tokenizer"]
    # "denoised": the scheduler's prediction of the clean latents at this step (its `pred_original_sample`; None for a
    # scheduler without one), what a live preview or a stopped job's partial result shows.
    _callback_tensor_inputs = ["latents", "denoised", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(self, vae=None, text_encoder=None, tokenizer=None, *, unet: HiGenUNet3DModel, scheduler,
                 settings: HiGenSettings | dict | None = None):
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
        # Checked now, so that a folder with bad settings fails to load with a message naming the key.
        HiGenSettings.resolve(settings, unet.config.motion_factor_range)
        self.register_to_config(settings=settings.to_dict() if isinstance(settings, HiGenSettings) else settings)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 8
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor)
        self._text_cache: OrderedDict = OrderedDict()
        self._interrupt = False

    @property
    def settings(self) -> HiGenSettings:
        """What this model recommends: the defaults of `generate_prior`, `animate` and `__call__` (see __init__)."""
        return HiGenSettings.resolve(self.config.settings, self.unet.config.motion_factor_range)

    @property
    def interrupt(self) -> bool:
        """Set `pipe._interrupt = True` (e.g. from a step callback) to stop the denoising loop after this step."""
        return self._interrupt

    # ------------------------------------------------------------------------------------------------------------
    # Text
    def _text_states(self, prompts: list[str], device) -> torch.Tensor:
        """(N, L, D) text states. A prompt is encoded once and kept (a few dozen at most): a prior's prompt is often
        its motion prompt too, and a creator animates the same prompts again and again."""
        if self.text_encoder is None or self.tokenizer is None:
            raise ValueError("This pipeline has no text encoder/tokenizer: pass `prompt_embeds` instead of prompts.")
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        if missing:
            with torch.no_grad():
                states = text_states(self.tokenizer, self.text_encoder, missing)
            for prompt, state in zip(missing, states):
                self._text_cache[prompt] = state
        for prompt in prompts:
            self._text_cache.move_to_end(prompt)
        while len(self._text_cache) > _TEXT_CACHE_SIZE:
            self._text_cache.popitem(last=False)
        return torch.stack([self._text_cache[p] for p in prompts]).to(device)

    def encode_prompt(self, prompt, negative_prompt=None, do_classifier_free_guidance=True, prompt_embeds=None,
                      negative_prompt_embeds=None, device=None):
        """(prompt_embeds, negative_prompt_embeds), each (N, L, D); the negative prompt defaults to the empty prompt,
        as in the official inference. negative_prompt_embeds is None without guidance."""
        device = device or self._execution_device
        if prompt_embeds is None:
            prompt_embeds = self._text_states(_as_list(prompt, "prompt"), device)
        if not do_classifier_free_guidance:
            return prompt_embeds.to(device), None
        if negative_prompt_embeds is None:
            negatives = _as_list(negative_prompt if negative_prompt is not None else "", "negative_prompt")
            if len(negatives) == 1:
                negatives = negatives * prompt_embeds.shape[0]
            negative_prompt_embeds = self._text_states(negatives, device)
        return prompt_embeds.to(device), negative_prompt_embeds.to(device)

    # ------------------------------------------------------------------------------------------------------------
    # Checks: one precise error per mistake.
    def check_inputs(self, prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, num_inference_steps,
                     guidance_scale, output_type, callback_on_step_end_tensor_inputs, feature_cache_interval=1):
        if prompt is None and prompt_embeds is None:
            raise ValueError("Give a `prompt` (a string or a list of strings) or `prompt_embeds`.")
        if prompt is not None and prompt_embeds is not None:
            raise ValueError("Give either `prompt` or `prompt_embeds`, not both.")
        for name, value in (("prompt", prompt), ("negative_prompt", negative_prompt)):
            if value is not None and not (isinstance(value, str) or (
                    isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(p, str) for p in value))):
                raise TypeError(f"`{name}` must be a string or a non-empty list of strings; got {type(value).__name__}.")
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError("Give either `negative_prompt` or `negative_prompt_embeds`, not both.")
        if prompt_embeds is not None and prompt_embeds.ndim != 3:
            raise ValueError(f"`prompt_embeds` must be (N, L, D); got shape {tuple(prompt_embeds.shape)}.")
        if prompt_embeds is not None and negative_prompt_embeds is not None and (
                prompt_embeds.shape != negative_prompt_embeds.shape):
            raise ValueError(
                f"`prompt_embeds` {tuple(prompt_embeds.shape)} and `negative_prompt_embeds` "
                f"{tuple(negative_prompt_embeds.shape)} must have the same shape."
            )
        if isinstance(prompt, (list, tuple)) and isinstance(negative_prompt, (list, tuple)) and (
                len(negative_prompt) not in (1, len(prompt))):
            raise ValueError(f"{len(negative_prompt)} negative prompts for {len(prompt)} prompts: give 1 or one each.")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be a positive integer; got {num_inference_steps!r}.")
        if not isinstance(feature_cache_interval, int) or feature_cache_interval < 1:
            raise ValueError(f"`feature_cache_interval` must be a positive integer (1: no feature caching, 3: the "
                             f"whole network every third step); got {feature_cache_interval!r}.")
        if not (isinstance(guidance_scale, (int, float)) and math.isfinite(guidance_scale) and guidance_scale >= 0):
            raise ValueError(f"`guidance_scale` must be a number >= 0; got {guidance_scale!r}.")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}; got {output_type!r}.")
        if output_type != "latent" and self.vae is None:
            raise ValueError("This pipeline has no VAE to decode with: use output_type='latent' or load a VAE.")
        unknown = [k for k in callback_on_step_end_tensor_inputs or [] if k not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(f"Step callbacks can receive {self._callback_tensor_inputs}; not {unknown}.")

    def _check_latents(self, latents, shape):
        if tuple(latents.shape) != tuple(shape):
            raise ValueError(f"`latents` has shape {tuple(latents.shape)}; expected {tuple(shape)}.")
        if not torch.isfinite(latents).all():
            raise ValueError("`latents` contains NaN or infinite values.")

    def check_factors(self, motion_factors: list, appearance_factors: list):
        """γm in [0, MAX_PERIOD] (a warning outside the model's trained range) and γa in [0, 1]; callers that run
        spatial reasoning first (the CLI, the studio) check them before spending time on it."""
        low, high = self.unet.config.motion_factor_range
        for gamma in motion_factors:
            if not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or not 0 <= gamma <= MAX_PERIOD:
                raise ValueError(f"motion_factor must be a number in [0, {MAX_PERIOD}]; got {gamma!r}.")
            if not low <= gamma <= high:
                logger.warning(f"motion_factor {gamma} is outside {low:g}-{high:g}, the range this model was trained "
                               f"on; expect less reliable motion.")
        for gamma in appearance_factors:
            if not isinstance(gamma, (int, float)) or not 0.0 <= gamma <= 1.0:
                raise ValueError(f"appearance_factor must be a number in [0, 1]; got {gamma!r}.")

    # ------------------------------------------------------------------------------------------------------------
    # Latents in and out
    def prepare_latents(self, shape, generator, offset_noise: bool, device, latents=None):
        """Starting noise, or the given `latents` checked and used as given. The video's drawn noise gets the
        official offset noise: one extra draw per frame and channel."""
        if latents is not None:
            self._check_latents(latents, shape)
            return latents.to(device=device, dtype=torch.float32)
        latents = randn_tensor(shape, generator=generator, device=torch.device(device), dtype=torch.float32)
        if offset_noise:
            offset = randn_tensor(shape[:3] + (1, 1), generator=generator, device=torch.device(device),
                                  dtype=torch.float32)
            latents = latents + OFFSET_NOISE_STRENGTH * offset
        return latents

    def decode_latents(self, latents: torch.Tensor, chunk_size: int = 8) -> torch.Tensor:
        """(B, C, F, H, W) latents -> (B, 3, F, H*8, W*8) pixels in [-1, 1], decoded `chunk_size` frames at a time
        so that long videos fit in memory."""
        batch, channels, frames, height, width = latents.shape
        flat = latents.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)
        flat = flat.to(self.vae.dtype) / self.vae.config.scaling_factor
        with torch.no_grad():
            decoded = torch.cat([self.vae.decode(chunk).sample for chunk in flat.split(chunk_size)])
        return decoded.reshape(batch, frames, *decoded.shape[1:]).permute(0, 2, 1, 3, 4).float()

    @torch.no_grad()
    def encode_prior_image(self, image, height: int | None = None, width: int | None = None) -> torch.Tensor:
        """A user's image as a spatial prior: resized and centre-cropped to the model's resolution, encoded by the
        VAE (its mean, so the same image gives the same prior). Returns (1, C, H/8, W/8)."""
        if self.vae is None:
            raise ValueError("This pipeline has no VAE to encode an image with.")
        height, width = self._default_size(height, width)
        pixels = self.image_processor.preprocess(image, height=height, width=width, resize_mode="crop")
        pixels = pixels.to(device=self._execution_device, dtype=self.vae.dtype)
        return self.vae.encode(pixels).latent_dist.mode().float() * self.vae.config.scaling_factor

    def _default_size(self, height, width):
        sample_h, sample_w = self.unet.config.sample_size
        height = height or sample_h * self.vae_scale_factor
        width = width or sample_w * self.vae_scale_factor
        if height % self.vae_scale_factor or width % self.vae_scale_factor:
            raise ValueError(f"height and width must be multiples of {self.vae_scale_factor}; got {height}x{width}.")
        return height, width

    # ------------------------------------------------------------------------------------------------------------
    # The denoising loop both steps share.
    def _denoise(self, latents, prompt_embeds, negative_prompt_embeds, conditions, num_inference_steps,
                 guidance_scale, generator, callback_on_step_end, callback_on_step_end_tensor_inputs,
                 feature_cache_interval):
        device = latents.device
        do_guidance = negative_prompt_embeds is not None
        text = torch.cat([negative_prompt_embeds, prompt_embeds]) if do_guidance else prompt_embeds
        if do_guidance:  # uncond and cond share one batched forward; their conditions are the same
            conditions = {k: torch.cat([v, v]) for k, v in conditions.items()}
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._interrupt = False
        caching, deep_features = feature_cache_interval > 1, None
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    break
                model_input = torch.cat([latents, latents]) if do_guidance else latents
                model_input = self.scheduler.scale_model_input(model_input, t)
                # Feature caching: the whole network every `feature_cache_interval` steps; in between only its
                # outermost level, on the deep features of the last whole step.
                reuse = caching and i % feature_cache_interval != 0
                outputs = self.unet(model_input, t, text, **conditions, deep_features=deep_features if reuse else None,
                                    return_deep_features=caching and not reuse, return_dict=False)
                if caching and not reuse:
                    deep_features = outputs[1]
                prediction = outputs[0].float()
                if do_guidance:
                    uncond, cond = prediction.chunk(2)
                    prediction = uncond + guidance_scale * (cond - uncond)
                step = self.scheduler.step(prediction, t, latents, generator=generator)
                latents = step.prev_sample

                if callback_on_step_end is not None:
                    values = {"latents": latents, "denoised": getattr(step, "pred_original_sample", None),
                              "prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds}
                    outputs = callback_on_step_end(self, i, t, {k: values[k] for k in
                                                                callback_on_step_end_tensor_inputs})
                    latents = outputs.pop("latents", latents)
                progress_bar.update()
        return latents

    # ------------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate_prior(self, prompt=None, negative_prompt=None, height=None, width=None, num_images_per_prompt=1,
                       num_inference_steps=None, guidance_scale=None, generator=None, latents=None,
                       prompt_embeds=None, negative_prompt_embeds=None, output_type="pil",
                       callback_on_step_end=None, callback_on_step_end_tensor_inputs=("latents",),
                       feature_cache_interval=1, return_dict=True):
        r"""
        Spatial reasoning: the UNet's spatial layers alone (one frame) turn the prompt into a latent image, the
        spatial prior. `latents` (B, C, H/8, W/8) are used as given; `output_type` "pil", "np" or "pt" also decodes
        previews, "latent" does not. `feature_cache_interval` > 1 is the opt-in fast preset that changes the result
        (see `animate`). `num_inference_steps` and `guidance_scale` default to the model's `settings`. Returns
        `HiGenPriorOutput(latents, images)`.
        """
        # 1. Check inputs; what the caller leaves out comes from the model's recommended settings.
        settings = self.settings
        num_inference_steps = settings.num_inference_steps if num_inference_steps is None else num_inference_steps
        guidance_scale = settings.guidance_scale if guidance_scale is None else guidance_scale
        self.check_inputs(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, num_inference_steps,
                          guidance_scale, output_type, callback_on_step_end_tensor_inputs, feature_cache_interval)
        if not isinstance(num_images_per_prompt, int) or num_images_per_prompt < 1:
            raise ValueError(f"`num_images_per_prompt` must be a positive integer; got {num_images_per_prompt!r}.")
        if latents is not None and height is None and width is None:  # the size of the given noise
            height, width = (size * self.vae_scale_factor for size in latents.shape[-2:])
        height, width = self._default_size(height, width)
        device = self._execution_device

        # 2. Text, each prompt repeated for its candidates.
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, negative_prompt, guidance_scale > 1.0, prompt_embeds, negative_prompt_embeds, device)
        prompt_embeds = prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0)
        if negative_prompt_embeds is not None:
            negative_prompt_embeds = negative_prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0)
        batch = prompt_embeds.shape[0]

        # 3. Starting noise: one frame.
        channels = self.unet.config.in_channels
        shape = (batch, channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        latents = self.prepare_latents(shape, generator, offset_noise=False, device=device, latents=latents)

        # 4. Spatial reasoning's conditions, as in the official inference: no prior (zeros), motion factor 0 and an
        #    appearance row of ones.
        conditions = {
            "spatial_prior": torch.zeros(shape, device=device),
            "motion_factors": torch.zeros(batch, device=device),
            "appearance_matrix": torch.ones(batch, 1, self.unet.config.appearance_width, device=device),
        }

        # 5. Denoise.
        latents = self._denoise(latents[:, :, None], prompt_embeds, negative_prompt_embeds, conditions,
                                num_inference_steps, guidance_scale, generator, callback_on_step_end,
                                callback_on_step_end_tensor_inputs, feature_cache_interval)[:, :, 0]

        # 6. Previews.
        images = None
        if output_type != "latent":
            pixels = self.decode_latents(latents[:, :, None])[:, :, 0]
            images = self.image_processor.postprocess(pixels, output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return latents, images
        return HiGenPriorOutput(latents=latents, images=images)

    @torch.no_grad()
    def animate(self, prior, prompt=None, negative_prompt=None, motion_factor=None, appearance_factor=None,
                num_frames=None, num_inference_steps=None, guidance_scale=None, generator=None, latents=None,
                prompt_embeds=None, negative_prompt_embeds=None, output_type="pil", decode_chunk_size=8,
                callback_on_step_end=None, callback_on_step_end_tensor_inputs=("latents",), feature_cache_interval=1,
                return_dict=True):
        r"""
        Temporal reasoning: the full UNet turns noise into a video guided by the spatial prior, the motion prompt(s),
        the motion factor γm and the appearance factor γa.

        Args:
            prior: `HiGenPriorOutput` or (B, C, H/8, W/8) latents. One prior serves every prompt (the paper's Fig. 6).
            prompt: one motion prompt or a list: each is a video of the same batched call.
            motion_factor: γm, frame-difference magnitude (300-600 for the released model): one number, or one per
                video. Default: the model's `settings.motion_factor`.
            appearance_factor: γa in [0, 1], how much appearance changes from first to last frame: one number, or one
                per video. Default: the model's `settings.appearance_factor`.
            num_inference_steps, guidance_scale: default to the model's `settings`.
            num_frames: frames per video (the model's trained count by default).
            latents: (B, C, F, H/8, W/8) starting noise, used as given.
            feature_cache_interval: an opt-in fast preset that changes the result (DeepCache-style feature caching):
                N > 1 runs the whole UNet every N steps and only its outermost level in between, reusing the deeper
                features of the last whole step. 1 (the default) leaves the result exact.
        Returns `HiGenVideoOutput(latents, frames)`.
        """
        # 1. Check inputs; what the caller leaves out comes from the model's recommended settings.
        settings = self.settings
        motion_factor = settings.motion_factor if motion_factor is None else motion_factor
        appearance_factor = settings.appearance_factor if appearance_factor is None else appearance_factor
        num_inference_steps = settings.num_inference_steps if num_inference_steps is None else num_inference_steps
        guidance_scale = settings.guidance_scale if guidance_scale is None else guidance_scale
        self.check_inputs(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, num_inference_steps,
                          guidance_scale, output_type, callback_on_step_end_tensor_inputs, feature_cache_interval)
        prior = prior.latents if isinstance(prior, HiGenPriorOutput) else prior
        channels = self.unet.config.in_channels
        if not isinstance(prior, torch.Tensor) or prior.ndim != 4 or prior.shape[1] != channels:
            raise ValueError(
                f"`prior` must be a HiGenPriorOutput or latents of shape (B, {channels}, H, W); got "
                f"{tuple(prior.shape) if isinstance(prior, torch.Tensor) else type(prior).__name__}. "
                f"For an image, use pipe.encode_prior_image(image)."
            )
        if not torch.isfinite(prior).all():
            raise ValueError("`prior` contains NaN or infinite values.")
        num_frames = num_frames or self.unet.config.num_frames
        width_limit = self.unet.config.appearance_width
        if not isinstance(num_frames, int) or not 2 <= num_frames <= width_limit:
            raise ValueError(f"num_frames must be an integer from 2 to {width_limit} for this model (its appearance "
                             f"width); got {num_frames!r}. One frame is a prior: use generate_prior.")
        if not isinstance(decode_chunk_size, int) or decode_chunk_size < 1:
            raise ValueError(f"`decode_chunk_size` must be a positive integer; got {decode_chunk_size!r}.")
        device = self._execution_device

        # 2. Text.
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, negative_prompt, guidance_scale > 1.0, prompt_embeds, negative_prompt_embeds, device)

        # 3. Batch: one prior for every prompt, one prompt for every prior, or one each.
        batch = max(prompt_embeds.shape[0], prior.shape[0])
        if {prompt_embeds.shape[0], prior.shape[0]} - {1, batch}:
            raise ValueError(f"{prior.shape[0]} priors and {prompt_embeds.shape[0]} prompts: give one prior for all "
                             f"prompts, one prompt for all priors, or as many of each.")
        prompt_embeds = prompt_embeds.expand(batch, -1, -1)
        if negative_prompt_embeds is not None:
            negative_prompt_embeds = negative_prompt_embeds.expand(batch, -1, -1)
        prior = prior.to(device=device, dtype=torch.float32).expand(batch, -1, -1, -1)
        motion_factors = _as_list(motion_factor, "motion_factor")
        appearance_factors = _as_list(appearance_factor, "appearance_factor")
        for name, values in (("motion_factor", motion_factors), ("appearance_factor", appearance_factors)):
            if len(values) not in (1, batch):
                raise ValueError(f"{len(values)} values of {name} for {batch} videos: give one, or one per video.")
        self.check_factors(motion_factors, appearance_factors)

        # 4. Starting noise.
        shape = (batch, channels, num_frames) + tuple(prior.shape[2:])
        latents = self.prepare_latents(shape, generator, offset_noise=True, device=device, latents=latents)

        # 5. Temporal reasoning's conditions: the prior, γm for every pair of frames, the Eq. 4 matrix for γa.
        conditions = {
            "spatial_prior": prior,
            "motion_factors": torch.tensor(motion_factors, device=device, dtype=torch.float32)
            .reshape(-1, 1).expand(batch, num_frames - 1),
            "appearance_matrix": torch.stack(
                [appearance_matrix(float(g), num_frames, width_limit) for g in appearance_factors]
            ).to(device).expand(batch, -1, -1),
        }

        # 6. Denoise.
        latents = self._denoise(latents, prompt_embeds, negative_prompt_embeds, conditions, num_inference_steps,
                                guidance_scale, generator, callback_on_step_end, callback_on_step_end_tensor_inputs,
                                feature_cache_interval)

        # 7. Frames.
        if output_type == "latent":
            frames = latents
        else:
            frames = self.video_processor.postprocess_video(self.decode_latents(latents, decode_chunk_size),
                                                            output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return latents, frames
        return HiGenVideoOutput(latents=latents, frames=frames)

    @torch.no_grad()
    def __call__(self, prompt=None, motion_prompt=None, negative_prompt=None, height=None, width=None,
                 num_frames=None, motion_factor=None, appearance_factor=None, num_inference_steps=None,
                 guidance_scale=None, generator=None, output_type="pil", decode_chunk_size=8,
                 callback_on_step_end=None, callback_on_step_end_tensor_inputs=("latents",), feature_cache_interval=1,
                 return_dict=True):
        r"""
        Both steps: a spatial prior from `prompt`, then a video from it for `motion_prompt` (default: `prompt`; a
        list animates the one prior with each). Factors, steps and guidance left out come from the model's
        `settings`. Returns `HiGenPipelineOutput(latents, frames, prior_latents)`.
        """
        # 1. Spatial reasoning.
        prior = self.generate_prior(
            prompt, negative_prompt, height, width, num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale, generator=generator, output_type="latent",
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            feature_cache_interval=feature_cache_interval)
        # 2. Temporal reasoning on that prior.
        video = self.animate(
            prior, motion_prompt if motion_prompt is not None else prompt, negative_prompt, motion_factor,
            appearance_factor, num_frames, num_inference_steps, guidance_scale, generator,
            output_type=output_type, decode_chunk_size=decode_chunk_size, callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            feature_cache_interval=feature_cache_interval)
        if not return_dict:
            return video.latents, video.frames, prior.latents
        return HiGenPipelineOutput(latents=video.latents, frames=video.frames, prior_latents=prior.latents)
