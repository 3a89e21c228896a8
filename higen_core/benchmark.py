# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""HiGen's inference benchmark: the released model's workload, the official way against ours.

    python -m higen_core.benchmark                    # released size, on a GPU
    python -m higen_core.benchmark --size tiny        # tiny components on a CPU in under a minute: correctness
    python -m higen_core.benchmark --compile --offload none model sequential --preset dpm deepcache --json out.json

Workload: the released network (1.48B parameters) and SD 2.1's VAE, random weights built in code (any weights cost
the same), random (1, 77, 1024) text states; spatial reasoning (1 frame), then temporal reasoning (32 frames at
448x256), 50 DDIM steps each, guidance 12, then VAE decoding; every mode from the same noise and text states.
--size tiny: the tiny UNet and VAE of `higen_core.testing`, those of `higen_core.load_pipeline("tiny")`. No
pipeline is loaded from a folder: every mode assembles its `HiGenPipeline` from copies of these two components
(without a text encoder, given the text states), in the precision and layout that mode measures.

  reference  the official inference: fp32 weights under float16 autocast (bfloat16 on a CPU, whose float16 autocast
             is slow or unsupported), guidance as two forwards (cond, uncond), eager, fp32 VAE decoding 2 frames at a
             time; a small sampling loop here, on the pipeline's scheduler and UNet.
  default    HiGenPipeline plus what leaves the result unchanged: weights cast once to half precision, guidance as one
             batched forward, PyTorch SDPA, channels-last weights where a probe finds them faster, VAE decoding in the
             largest chunk memory allows, on CUDA the launch-bound prior stage as a CUDA graph; --compile: one full,
             static graph per stage, recompiles are errors. --offload reruns it with model or sequential CPU offload.
  diffusers  diffusers' UNet3DConditionModel at ModelScope's configuration, per denoising step, timed the same way.
  --preset      fast presets that change the result, run on the default mode's setup and compared with it:
                dpm: DPM-Solver++ (2M, `dpm_scheduler`) at half the steps, same betas and prediction type;
                deepcache: feature caching, the whole UNet every FEATURE_CACHE_INTERVAL steps of the video stage
                and only its outermost level in between (`feature_cache_interval`).

Seconds: medians of --runs runs after --warmup; peak memory: torch.cuda.max_memory_allocated; FLOPs: FlopCounterMode
(matmuls, convolutions, attention) on the meta device; MFU: FLOPs / seconds / the GPU's dense bf16/fp16 peak.
--json FILE writes "config", "flops", "modes" ("reference", "default": stages "prior", "video", "decode", "total" with
"seconds", "peak_memory_bytes", "warmup_seconds", "mfu"), "offload" (per memory mode, same stages), "presets",
"diffusers_unet3d", "default_step_seconds", "default_setup", "ratios", "max_abs_diff", "compile", "notes".
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import re
import statistics
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import diffusers
import torch
from diffusers import AutoencoderKL, UNet3DConditionModel
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.utils.torch_utils import randn_tensor
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .conditioning import appearance_matrix
from .pipeline_higen import HiGenPipeline, default_scheduler, dpm_scheduler
from .testing import tiny_unet, tiny_vae
from .unet_higen import HiGenUNet3DModel, HiGenUNet3DOutput

GUIDANCE_SCALE = 12.0
APPEARANCE_FACTOR = 1.0
SEED = 0
# The official inference decodes two frames at a time.
REFERENCE_DECODE_CHUNK = 2
# Share of the free GPU memory the default mode's VAE decoding may plan for; the rest absorbs fragmentation and cuDNN
# workspaces, which the one-frame probe does not see in full.
DECODE_MEMORY_SHARE = 0.8
# Dense bf16/fp16 tensor-core peaks in TFLOP/s by device name, first match wins: the PCIe H100 before the SXM one
# ("NVIDIA H100 80GB HBM3"); an H100 NVL, not in this table, stays unknown.
PEAK_TFLOPS = ((r"H100.*PCIe", 756.0), (r"\bH100\b(?!.*NVL)", 989.0), (r"\bH200\b", 989.0), (r"\bA100\b", 312.0),
               (r"\bL4\b", 121.0), (r"RTX 4090", 165.0))
SIZE_DEFAULTS = {"full": dict(frames=32, steps=50, runs=3), "tiny": dict(frames=4, steps=4, runs=2)}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
# The deepcache preset's interval: the whole network on every third step (DeepCache's N=3, its near-lossless setting).
FEATURE_CACHE_INTERVAL = 3
PRESETS = ("dpm", "deepcache")


# Components
def sd21_vae() -> AutoencoderKL:
    """Stable Diffusion 2.1's VAE (HiGen's autoencoder): 4 levels of 128-512 channels, 4 latent channels."""
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                         layers_per_block=2, latent_channels=4, norm_num_groups=32, scaling_factor=0.18215).eval()


def modelscope_unet3d(size: str) -> UNet3DConditionModel:
    """diffusers' UNet3DConditionModel at ModelScope T2V's configuration (HiGen's base model), or its tiny mirror."""
    if size == "full":
        config = dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=1024,
                      attention_head_dim=64, down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
                      up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3)
    else:
        config = dict(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32, attention_head_dim=16,
                      down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                      up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"))
    torch.manual_seed(SEED)
    return UNet3DConditionModel(in_channels=4, out_channels=4, norm_num_groups=32, **config).eval()


def _activate_zero_initialised_(model: nn.Module) -> None:
    """Give the released network's zero-initialised layers (HiGen's additions, residual branches, temporal layers,
    head) PyTorch's default initialisation: at zero, most of the network would not reach the output and the
    reference-vs-default difference would measure nothing. Default initialisation, rather than the tiny model's fixed
    noise, keeps activations in float16's range through the 1280-channel layers. A forward costs the same either way."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d)) and not module.weight.any():
            module.reset_parameters()


def build_components(size: str) -> tuple[HiGenUNet3DModel, AutoencoderKL]:
    """fp32 UNet and VAE on the CPU, seeded: the reference mode's weights and the source of every half copy."""
    if size == "tiny":
        return tiny_unet(SEED), tiny_vae(SEED)
    torch.manual_seed(SEED)
    unet = HiGenUNet3DModel().eval()
    _activate_zero_initialised_(unet)
    return unet, sd21_vae()


def _cast(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Weights cast once. nn.Module.to rather than ModelMixin.to: the latter warns about float32-only modules, and
    these models have none."""
    return nn.Module.to(model, dtype)


# Inputs and conditions (as HiGenPipeline builds them)
@dataclass
class Inputs:
    """What every mode starts from: text states (1, 77, D) and starting noise, the video's with offset noise."""

    cond: torch.Tensor
    uncond: torch.Tensor
    prior_noise: torch.Tensor  # (1, C, H, W)
    video_noise: torch.Tensor  # (1, C, F, H, W)
    motion_factor: float


def make_inputs(pipe: HiGenPipeline, frames: int, device: torch.device) -> Inputs:
    """Drawn on the CPU from one seed, so that every device and mode gets the same numbers."""
    config = pipe.unet.config
    generator = torch.Generator().manual_seed(SEED)
    cond, uncond = (randn_tensor((1, 77, config.text_embed_dim), generator=generator) for _ in range(2))
    latent = (1, config.in_channels)
    prior_noise = pipe.prepare_latents(latent + tuple(config.sample_size), generator, offset_noise=False, device="cpu")
    video_noise = pipe.prepare_latents(latent + (frames,) + tuple(config.sample_size), generator, offset_noise=True,
                                       device="cpu")
    # Any motion factor costs the same; the middle of the trained range avoids the pipeline's out-of-range warning.
    return Inputs(cond.to(device), uncond.to(device), prior_noise.to(device), video_noise.to(device),
                  sum(config.motion_factor_range) / 2)


def prior_conditions(config: Any, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Spatial reasoning's conditions: no prior, motion factor 0, an appearance row of ones."""
    return {"spatial_prior": torch.zeros(batch, config.in_channels, *config.sample_size, device=device),
            "motion_factors": torch.zeros(batch, device=device),
            "appearance_matrix": torch.ones(batch, 1, config.appearance_width, device=device)}


def video_conditions(config: Any, prior: torch.Tensor, frames: int, motion_factor: float) -> dict[str, torch.Tensor]:
    """Temporal reasoning's conditions: the prior, γm for every pair of frames, the Eq. 4 matrix for γa."""
    batch = prior.shape[0]
    matrix = appearance_matrix(APPEARANCE_FACTOR, frames, config.appearance_width)
    return {"spatial_prior": prior,
            "motion_factors": torch.full((batch, frames - 1), motion_factor, device=prior.device),
            "appearance_matrix": matrix.to(prior.device).expand(batch, -1, -1)}


# FLOPs
def count_flops(model: nn.Module, call: Callable[[nn.Module], Any]) -> int:
    """FLOPs of `call(m)` where m is `model`'s architecture on the meta device: shapes only, so the released size is
    counted in seconds without memory, and attention counts on every backend (the CPU's fused SDPA kernel is missing
    from FlopCounterMode's table; on meta SDPA runs as matmuls). Without gradients: FlopCounterMode's module tracker
    fails on a parameter view that requires grad without a grad_fn (the resampler's expanded query tokens)."""
    with torch.device("meta"):
        meta = type(model).from_config(model.config).requires_grad_(False)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        call(meta)
    return counter.get_total_flops()


def workload_flops(unet: HiGenUNet3DModel, vae: AutoencoderKL, unet3d: UNet3DConditionModel | None,
                   frames: int) -> dict[str, int]:
    """Per call, batch 2 (guidance): the UNet at 1 frame and at `frames`, diffusers' UNet3D at `frames`; the VAE per
    decoded frame."""
    config = unet.config
    meta = torch.device("meta")
    text = torch.empty(2, 77, config.text_embed_dim, device=meta)
    t = torch.tensor(500, device=meta)

    def higen(num_frames: int) -> Callable[[nn.Module], Any]:
        sample = torch.empty(2, config.in_channels, num_frames, *config.sample_size, device=meta)
        prior = torch.empty(2, config.in_channels, *config.sample_size, device=meta)
        conditions = (prior_conditions(config, 2, meta) if num_frames == 1
                      else video_conditions(config, prior, num_frames, 1.0))
        return lambda m: m(sample, t, text, **conditions)

    flops = {"unet_prior_call": count_flops(unet, higen(1)), "unet_video_call": count_flops(unet, higen(frames)),
             "vae_decode_frame": count_flops(vae, lambda m: m.decode(
                 torch.empty(1, vae.config.latent_channels, *config.sample_size, device=meta)))}
    if unet3d is not None:
        sample = torch.empty(2, config.in_channels, frames, *config.sample_size, device=meta)
        flops["diffusers_unet3d_call"] = count_flops(
            unet3d, lambda m: m(sample, t, torch.empty(2, 77, unet3d.config.cross_attention_dim, device=meta)))
    return flops


def peak_tflops(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, next((peak for pattern, peak in PEAK_TFLOPS if re.search(pattern, name)), None)


# Timing
Stage = tuple[str, Callable[[Any], Any]]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(stages: list[Stage], device: torch.device, warmup: int, runs: int) -> tuple[dict[str, Any], dict]:
    """Run the chained stages (each gets the previous one's output) warmup + runs times. Returns the last run's
    outputs and, per stage and "total": median seconds of the timed runs, their peak memory (None off CUDA), and the
    first run's seconds (compilation and graph capture included)."""
    seconds: dict[str, list[float]] = {name: [] for name, _ in stages}
    peaks: dict[str, int | None] = {name: None for name, _ in stages}
    first: dict[str, float] = {}
    outputs: dict[str, Any] = {}
    for run in range(warmup + runs):
        value, this_run = None, []
        for name, fn in stages:
            _sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            value = fn(value)
            _sync(device)
            elapsed = time.perf_counter() - start
            outputs[name] = value
            first.setdefault(name, elapsed)
            this_run.append(f"{name} {elapsed:.3f} s")
            if run >= warmup:
                seconds[name].append(elapsed)
                if device.type == "cuda":
                    peaks[name] = max(peaks[name] or 0, torch.cuda.max_memory_allocated(device))
        # A full-size run takes minutes: each run's times as they come, so a stopped run still tells something.
        print(f"  run {run + 1}/{warmup + runs} ({'warmup' if run < warmup else 'timed'}): {', '.join(this_run)}",
              flush=True)
    seconds["total"] = [sum(times[i] for times in seconds.values()) for i in range(runs)]
    peaks["total"] = max((p for p in peaks.values() if p is not None), default=None)
    first["total"] = sum(first.values())
    return outputs, {name: {"seconds": statistics.median(seconds[name]), "peak_memory_bytes": peaks[name],
                            "warmup_seconds": first[name] if warmup else None} for name in seconds}


@contextlib.contextmanager
def resident(device: torch.device, *models: nn.Module) -> Iterator[None]:
    """Keep `models` on `device` only while one mode runs, so that each mode's peak memory counts its own weights."""
    for model in models:
        model.to(device)
    try:
        yield
    finally:
        for model in models:
            model.to("cpu")
        if device.type == "cuda":
            torch.cuda.empty_cache()


# Mode 1: the official way
def _reference_denoise(pipe: HiGenPipeline, latents: torch.Tensor, inputs: Inputs, conditions: dict, steps: int,
                       half: torch.dtype) -> torch.Tensor:
    scheduler = pipe.scheduler
    scheduler.set_timesteps(steps, device=latents.device)
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(latents, t)
        with torch.autocast(latents.device.type, dtype=half):
            cond = pipe.unet(model_input, t, inputs.cond, **conditions, return_dict=False)[0]
            uncond = pipe.unet(model_input, t, inputs.uncond, **conditions, return_dict=False)[0]
        prediction = uncond.float() + GUIDANCE_SCALE * (cond.float() - uncond.float())
        latents = scheduler.step(prediction, t, latents, return_dict=False)[0]
    return latents


def reference_stages(pipe: HiGenPipeline, inputs: Inputs, steps: int, half: torch.dtype) -> list[Stage]:
    config, frames = pipe.unet.config, inputs.video_noise.shape[2]
    return [
        ("prior", lambda _: _reference_denoise(pipe, inputs.prior_noise[:, :, None], inputs,
                                               prior_conditions(config, 1, inputs.cond.device), steps, half)[:, :, 0]),
        ("video", lambda prior: _reference_denoise(pipe, inputs.video_noise, inputs,
                                                   video_conditions(config, prior, frames, inputs.motion_factor),
                                                   steps, half)),
        ("decode", lambda video: pipe.decode_latents(video, REFERENCE_DECODE_CHUNK)),
    ]


# Mode 2: ours
@contextlib.contextmanager
def routed(module: nn.Module, method: str, replacement: Callable | None) -> Iterator[None]:
    """Route `module.<method>` through `replacement` (a compiled graph or a CUDA graph) for one stage; the pipeline
    keeps calling its own components, so it runs unchanged."""
    if replacement is not None:
        setattr(module, method, replacement)
    try:
        yield
    finally:
        if replacement is not None:
            delattr(module, method)


def compiled_stage(module: nn.Module, method: str, stage: str, mode: str) -> Callable:
    """torch.compile of `module.<method>` for one stage: full graph, static shapes."""
    eager = getattr(type(module), method)

    def run(*args, **kwargs):
        return eager(module, *args, **kwargs)

    # Dynamo keeps its graphs on the code object it compiled. A code object of its own per stage gives each stage its
    # own graph, so a stage's first call is a first compilation rather than a recompilation of another stage's graph,
    # which error_on_recompile (set by --compile) would reject.
    code = run.__code__.replace(co_name=f"{stage}_stage", co_qualname=f"{stage}_stage")
    function = types.FunctionType(code, run.__globals__, code.co_name, run.__defaults__, run.__closure__)
    return torch.compile(function, fullgraph=True, dynamic=False, mode=mode)


class CudaGraphForward:
    """The UNet's forward replayed from one captured CUDA graph. The 1-frame prior stage is launch-bound: hundreds of
    kernels per call, each shorter than its launch; a replay issues them all at once. Valid for the captured shapes
    only, which are fixed within a stage."""

    def __init__(self, unet: HiGenUNet3DModel):
        self.unet, self.graph = unet, None
        self.static_inputs: dict[str, torch.Tensor] = {}

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                 deep_features: torch.Tensor | None = None, return_deep_features: bool = False,
                 return_dict: bool = True, **conditions: torch.Tensor) -> HiGenUNet3DOutput | tuple:
        if deep_features is not None or return_deep_features:
            raise ValueError("The prior stage's CUDA graph runs the whole network: feature caching needs eager calls.")
        inputs = {"sample": sample, "timestep": torch.as_tensor(timestep, device=sample.device),
                  "encoder_hidden_states": encoder_hidden_states, **conditions}
        if self.graph is None:
            self._capture(inputs)
        for name, value in inputs.items():
            if value.shape != self.static_inputs[name].shape:  # copy_ would broadcast it silently
                raise ValueError(f"The CUDA graph was captured for {name} {tuple(self.static_inputs[name].shape)}.")
            self.static_inputs[name].copy_(value)
        self.graph.replay()
        output = self.static_output.clone()  # the next replay overwrites the graph's output buffer
        return HiGenUNet3DOutput(sample=output) if return_dict else (output,)

    def _capture(self, inputs: dict[str, torch.Tensor]) -> None:
        self.static_inputs = {name: value.clone() for name, value in inputs.items()}
        eager = type(self.unet).forward
        # Warm up on a side stream first: lazy cuBLAS/cuDNN initialisation must not happen inside the capture.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                eager(self.unet, **self.static_inputs, return_dict=False)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_output = eager(self.unet, **self.static_inputs, return_dict=False)[0]


def _set_channels_last(model: nn.Module, enabled: bool) -> None:
    # Conv2d weights only: channels-last is a 4-D layout; the temporal Conv3d weights keep theirs.
    layout = torch.channels_last if enabled else torch.contiguous_format
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.weight.data = module.weight.data.contiguous(memory_format=layout)


def choose_channels_last(model: nn.Module, call: Callable[[], Any], device: torch.device) -> dict:
    """Keep channels-last weights only where they are faster: time `call` with each layout (after one untimed call
    that lets cuDNN pick its kernels) and keep the faster one."""
    seconds = {}
    for enabled in (False, True):
        _set_channels_last(model, enabled)
        call()
        _sync(device)
        start = time.perf_counter()
        call()
        _sync(device)
        seconds[enabled] = time.perf_counter() - start
    enabled = seconds[True] < seconds[False]
    _set_channels_last(model, enabled)
    return {"enabled": enabled, "contiguous_seconds": seconds[False], "channels_last_seconds": seconds[True]}


def largest_decode_chunk(pipe: HiGenPipeline, frames: int, device: torch.device) -> int:
    """The most frames per VAE call that fit: the memory one frame's decoding needs, probed, against the free GPU
    memory. A divisor of `frames`, so that every chunk has one shape (one compiled graph). A CPU decodes all frames
    at once: its memory is the machine's."""
    if device.type != "cuda":
        return frames
    config = pipe.unet.config
    one_frame = torch.zeros(1, config.in_channels, 1, *config.sample_size, device=device)
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    pipe.decode_latents(one_frame, chunk_size=1)
    per_frame = torch.cuda.max_memory_allocated(device) - before
    fit = int(DECODE_MEMORY_SHARE * torch.cuda.mem_get_info(device)[0] // max(per_frame, 1))
    return max(d for d in range(1, frames + 1) if frames % d == 0 and d <= max(fit, 1))


@dataclass
class DefaultSetup:
    forwards: dict[str, Callable]
    decode_chunk: int
    channels_last: dict | None


def prepare_default(pipe: HiGenPipeline, inputs: Inputs, offload: str, compile_graphs: bool,
                    device: torch.device) -> DefaultSetup:
    """Layout probes, decoding chunk, offload hooks and stage accelerations for the default mode's pipeline. Compiled
    and CUDA graphs need weights that stay put, so offloaded runs are eager."""
    config, frames = pipe.unet.config, inputs.video_noise.shape[2]
    if offload != "none":
        pipe.enable_model_cpu_offload(device=device) if offload == "model" else \
            pipe.enable_sequential_cpu_offload(device=device)
        return DefaultSetup({}, decode_chunk=1, channels_last=None)  # one-frame chunks: VAE slicing
    pipe.to(device)
    sample = torch.cat([inputs.video_noise] * 2)
    text = torch.cat([inputs.uncond, inputs.cond])
    conditions = video_conditions(config, torch.cat([inputs.prior_noise] * 2), frames, inputs.motion_factor)
    layouts = {
        "unet": choose_channels_last(pipe.unet, lambda: pipe.unet(sample, 500, text, **conditions), device),
        "vae": choose_channels_last(pipe.vae, lambda: pipe.decode_latents(inputs.prior_noise[:, :, None], 1), device),
    }
    forwards: dict[str, Callable] = {}
    if compile_graphs:
        # On CUDA "reduce-overhead" adds CUDA graphs to the launch-bound prior stage.
        forwards["prior"] = compiled_stage(pipe.unet, "forward", "prior",
                                           "reduce-overhead" if device.type == "cuda" else "default")
        forwards["video"] = compiled_stage(pipe.unet, "forward", "video", "default")
        decode = compiled_stage(pipe.vae, "decode", "decode", "default")
        forwards["decode"] = lambda z, *args, **kwargs: DecoderOutput(sample=decode(z, return_dict=False)[0])
    elif device.type == "cuda":
        forwards["prior"] = CudaGraphForward(pipe.unet)
    return DefaultSetup(forwards, largest_decode_chunk(pipe, frames, device), layouts)


def default_stages(pipe: HiGenPipeline, inputs: Inputs, steps: int, setup: DefaultSetup,
                   feature_cache_interval: int = 1) -> list[Stage]:
    text = dict(prompt_embeds=inputs.cond, negative_prompt_embeds=inputs.uncond, num_inference_steps=steps,
                guidance_scale=GUIDANCE_SCALE, output_type="latent")

    def prior(_):
        with routed(pipe.unet, "forward", setup.forwards.get("prior")):
            return pipe.generate_prior(latents=inputs.prior_noise, **text).latents

    def video(prior_latents):
        with routed(pipe.unet, "forward", setup.forwards.get("video")):
            return pipe.animate(prior_latents, motion_factor=inputs.motion_factor,
                                appearance_factor=APPEARANCE_FACTOR, num_frames=inputs.video_noise.shape[2],
                                latents=inputs.video_noise, feature_cache_interval=feature_cache_interval,
                                **text).latents

    def decode(video_latents):
        with routed(pipe.vae, "decode", setup.forwards.get("decode")):
            return pipe.decode_latents(video_latents, setup.decode_chunk)

    return [("prior", prior), ("video", video), ("decode", decode)]


def _pipeline(unet: nn.Module, vae: nn.Module, scheduler: Any = None) -> HiGenPipeline:
    pipe = HiGenPipeline(vae=vae, unet=unet, scheduler=scheduler or default_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


# Mode 3: diffusers' UNet3DConditionModel, per denoising step
def diffusers_stages(unet3d: UNet3DConditionModel, inputs: Inputs, steps: int,
                     forward: Callable | None) -> list[Stage]:
    """The default mode's denoising loop (one batched-guidance forward, DDIM step) on diffusers' UNet3D."""
    # diffusers' UNet3D takes its inputs in its own dtype; the DDIM arithmetic stays fp32, as in HiGenPipeline.
    dtype = unet3d.dtype
    text = torch.cat([inputs.uncond, inputs.cond]).to(dtype)
    scheduler = default_scheduler()

    def video(_):
        latents = inputs.video_noise
        scheduler.set_timesteps(steps, device=latents.device)
        with routed(unet3d, "forward", forward):
            for t in scheduler.timesteps:
                prediction = unet3d(torch.cat([latents] * 2).to(dtype), t, text, return_dict=False)[0].float()
                uncond, cond = prediction.chunk(2)
                latents = scheduler.step(uncond + GUIDANCE_SCALE * (cond - uncond), t, latents,
                                         return_dict=False)[0]
        return latents

    return [("video", video)]


# Figures and report
def stage_work(flops: dict[str, int], steps: int, frames: int) -> dict[str, int]:
    """Model FLOPs per stage: batched-guidance UNet calls and decoded frames. The reference's two batch-1 forwards do
    the same work as one batch-2 forward, so both modes share these figures."""
    work = {"prior": steps * flops["unet_prior_call"], "video": steps * flops["unet_video_call"],
            "decode": frames * flops["vae_decode_frame"]}
    return {**work, "total": sum(work.values())}


def add_mfu(stats: dict, work: dict[str, int], peak: float | None) -> dict:
    for stage, entry in stats.items():
        entry["mfu"] = work[stage] / entry["seconds"] / (peak * 1e12) if peak else None
    return stats


def _flop(value: int) -> str:
    return f"{value / 1e12:.3f} TFLOP" if value >= 1e11 else f"{value / 1e9:.3f} GFLOP"


def print_report(result: dict) -> None:
    config, flops, frames = result["config"], result["flops"], result["config"]["frames"]
    lines = [
        f"\nHiGen benchmark, size {config['size']}, {config['device_name']}, {config['dtype']}: {frames} frames at "
        f"{config['width']}x{config['height']} (latents {config['latent_height']}x{config['latent_width']}), "
        f"{config['steps']} DDIM steps per stage, guidance {GUIDANCE_SCALE:g}; median of {config['runs']} runs",
        "FLOPs per call, batch 2 for guidance (FlopCounterMode on meta: matmuls, convolutions, attention): UNet",
        f"  1 frame (prior) {_flop(flops['unet_prior_call'])}, {frames} frames {_flop(flops['unet_video_call'])}; "
        f"diffusers UNet3D {_flop(flops['diffusers_unet3d_call'])}; VAE {_flop(flops['vae_decode_frame'])}/frame",
        f"\n  {'mode':<34}{'stage':<8}{'seconds':>9}{'first run':>11}{'peak mem':>12}{'MFU':>8}",
    ]
    tables = [("reference (official way)", result["modes"]["reference"]),
              (f"default (offload={config['offload'][0]})", result["modes"]["default"])]
    tables += [(f"default (offload={name})", stats) for name, stats in list(result["offload"].items())[1:]]
    tables += [(f"preset {name} ({preset['steps']} steps)", preset["stages"])
               for name, preset in result["presets"].items()]
    tables.append(("diffusers UNet3D, DDIM loop", result["diffusers_unet3d"]["stages"]))
    for label, stats in tables:
        for stage, entry in stats.items():
            first, peak, mfu = entry["warmup_seconds"], entry["peak_memory_bytes"], entry["mfu"]
            first = "" if first is None else f"{first:.3f}"
            lines.append(f"  {label:<34}{stage:<8}{entry['seconds']:>9.3f}{first:>11}"
                         f"{'n/a' if peak is None else f'{peak / 2**30:.2f} GiB':>12}"
                         f"{'n/a' if mfu is None else f'{100 * mfu:.1f}%':>8}")
            label = ""
    ratios, diff = result["ratios"], result["max_abs_diff"]
    lines += [
        f"\nPer denoising step ({frames} frames, one batched-guidance forward): default "
        f"{result['default_step_seconds']:.4f} s, diffusers UNet3DConditionModel "
        f"{result['diffusers_unet3d']['step_seconds']:.4f} s",
        f"Ratios: reference/default whole generation {ratios['reference_over_default']:.2f}x; "
        f"diffusers/default per step {ratios['diffusers_over_default_step']:.2f}x",
        f"Max |reference - default|: video latents {diff['video_latents']:.3g} (prior latents "
        f"{diff['prior_latents']:.3g}, decoded frames {diff['frames']:.3g})",
    ]
    lines += [f"Preset {name}: {preset['speedup_over_default']:.2f}x faster than default; it changes the result: "
              f"max |{name} - default| on video latents {preset['max_abs_diff']:.3g}"
              for name, preset in result["presets"].items()]
    lines += [f"Note: {note}" for note in result["notes"]]
    print("\n".join(lines), flush=True)


# Driver
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m higen_core.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("full", "tiny"), default="full",
                        help="full: the released model, a GPU workload; tiny: tiny components, a CPU correctness run")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), help="half precision (default fp16 on CUDA, bf16 on CPU)")
    parser.add_argument("--steps", type=int, help="DDIM steps per stage (full 50, tiny 4)")
    parser.add_argument("--frames", type=int, help="video frames (full 32, tiny 4)")
    parser.add_argument("--runs", type=int, help="timed runs, median reported (full 3, tiny 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before them")
    parser.add_argument("--compile", action="store_true", help="default mode: one full, static graph per stage")
    parser.add_argument("--offload", nargs="+", choices=("none", "model", "sequential"), default=["none"],
                        help="memory modes for the default mode; the first is the one compared")
    parser.add_argument("--preset", nargs="+", choices=PRESETS, default=[], help="fast presets that change results")
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    parser.add_argument("--force", action="store_true", help="run the full size on a CPU anyway")
    args = parser.parse_args(argv)
    for name, value in SIZE_DEFAULTS[args.size].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    on_cuda = args.device.startswith("cuda")
    args.dtype = args.dtype or ("fp16" if on_cuda else "bf16")
    if args.steps < 1 or args.runs < 1 or args.warmup < 0:
        parser.error("--steps and --runs must be at least 1, --warmup at least 0.")
    if args.compile and args.warmup < 1:
        parser.error("--compile needs --warmup 1 or more, or compilation would be timed.")
    if on_cuda and not torch.cuda.is_available():
        parser.error("--device cuda, but this torch sees no CUDA device.")
    if not on_cuda and args.offload != ["none"]:
        parser.error("--offload model/sequential move weights to an accelerator: they need --device cuda.")
    return args


def run_preset(name: str, pipe: HiGenPipeline, inputs: Inputs, args: argparse.Namespace, setup: DefaultSetup,
               default: tuple[dict, dict], flops: dict[str, int], peak: float | None) -> dict:
    """One fast preset on the default mode's weights and setup; it changes the result, and the difference is reported.
    dpm: DPM-Solver++ (2M) at half the steps (it matches DDIM-50 in about 20-25). deepcache: the same steps, the video
    stage's UNet whole every FEATURE_CACHE_INTERVAL steps (its MFU counts every step as a whole-network call: an
    effective figure, above the hardware's real use)."""
    if name == "dpm":
        steps = max(1, round(args.steps / 2))
        stages = default_stages(_pipeline(pipe.unet, pipe.vae, dpm_scheduler()), inputs, steps, setup)
    else:
        steps, forwards = args.steps, dict(setup.forwards)
        if args.compile:  # whole and cached calls are two graphs; one compiled function each avoids a recompile
            whole = compiled_stage(pipe.unet, "forward", "video_whole", "default")
            cached = compiled_stage(pipe.unet, "forward", "video_cached", "default")
            forwards["video"] = lambda *a, **k: (cached if k.get("deep_features") is not None else whole)(*a, **k)
        stages = default_stages(pipe, inputs, steps, DefaultSetup(forwards, setup.decode_chunk, setup.channels_last),
                                feature_cache_interval=FEATURE_CACHE_INTERVAL)
    outputs, stats = measure(stages, inputs.cond.device, args.warmup, args.runs)
    return {"steps": steps, "stages": add_mfu(stats, stage_work(flops, steps, args.frames), peak),
            "speedup_over_default": default[1]["total"]["seconds"] / stats["total"]["seconds"],
            "max_abs_diff": (outputs["video"] - default[0]["video"]).abs().max().item()}


def run(args: argparse.Namespace) -> dict:
    device, half = torch.device(args.device), DTYPES[args.dtype]
    unet, vae = build_components(args.size)
    if not 2 <= args.frames <= unet.config.appearance_width:
        raise SystemExit(f"--frames must be from 2 to {unet.config.appearance_width} (this model's appearance width).")
    reference_pipe = _pipeline(unet, vae)
    inputs = make_inputs(reference_pipe, args.frames, device)
    unet3d = _cast(modelscope_unet3d(args.size), half)
    flops = workload_flops(unet, vae, unet3d, args.frames)
    work = stage_work(flops, args.steps, args.frames)
    device_name, peak = peak_tflops(device)
    (latent_h, latent_w), scale = unet.config.sample_size, reference_pipe.vae_scale_factor
    result: dict[str, Any] = {
        "config": {"size": args.size, "device": str(device), "device_name": device_name, "peak_tflops": peak,
                   "dtype": str(half).removeprefix("torch."), "frames": args.frames, "height": latent_h * scale,
                   "width": latent_w * scale, "latent_height": latent_h, "latent_width": latent_w,
                   "steps": args.steps, "guidance_scale": GUIDANCE_SCALE, "runs": args.runs, "warmup": args.warmup,
                   "compile": args.compile, "offload": args.offload, "preset": args.preset,
                   "unet_parameters": sum(p.numel() for p in unet.parameters()), "torch": torch.__version__,
                   "diffusers": diffusers.__version__},
        "flops": flops, "modes": {}, "offload": {}, "presets": {},
    }
    graphs_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    with torch.no_grad(), torch._dynamo.config.patch(error_on_recompile=args.compile):
        print("reference mode ...", flush=True)
        with resident(device, unet, vae):
            reference, stats = measure(reference_stages(reference_pipe, inputs, args.steps, half), device,
                                       args.warmup, args.runs)
        result["modes"]["reference"] = add_mfu(stats, work, peak)
        for index, offload in enumerate(args.offload):
            print(f"default mode, offload={offload} ...", flush=True)
            pipe = _pipeline(_cast(copy.deepcopy(unet), half), _cast(copy.deepcopy(vae), half))
            setup = prepare_default(pipe, inputs, offload, args.compile, device)
            outputs, stats = measure(default_stages(pipe, inputs, args.steps, setup), device, args.warmup, args.runs)
            result["offload"][offload] = add_mfu(stats, work, peak)
            if index == 0:  # the compared mode: its presets run now, while its weights and graphs are in place
                result["modes"]["default"] = stats
                result["max_abs_diff"] = {
                    name: (reference[stage] - outputs[stage]).abs().max().item()
                    for name, stage in (("prior_latents", "prior"), ("video_latents", "video"), ("frames", "decode"))
                }
                result["default_setup"] = {"channels_last": setup.channels_last, "decode_chunk": setup.decode_chunk}
                layouts = {name: probe["enabled"] for name, probe in (setup.channels_last or {}).items()}
                attention = sorted({type(p).__name__ for p in pipe.unet.attn_processors.values()})
                result["notes"] = [
                    f"default mode (offload={offload}): attention {', '.join(attention)} (PyTorch SDPA); channels-"
                    f"last weights where probed faster: {layouts or 'not probed'}; the VAE decodes "
                    f"{setup.decode_chunk} frame(s) per call; prior stage as a CUDA graph: "
                    f"{device.type == 'cuda' and offload == 'none'}.",
                ]
                if device.type == "cpu":
                    result["notes"].append(
                        f"CPU: the reference's autocast and the default's weights use {result['config']['dtype']} "
                        f"(CPU float16 autocast is slow or unsupported); the times describe a correctness run.")
                for name in args.preset:
                    print(f"preset {name} ...", flush=True)
                    result["presets"][name] = run_preset(name, pipe, inputs, args, setup, (outputs, stats), flops,
                                                         peak)
            del pipe, setup, outputs  # before the next memory mode builds its own copies
            if device.type == "cuda":
                torch.cuda.empty_cache()

        print("diffusers UNet3DConditionModel ...", flush=True)
        with resident(device, unet3d):
            _set_channels_last(unet3d, layouts.get("unet", False))  # ours: the networks share their layers
            forward = compiled_stage(unet3d, "forward", "diffusers_step", "default") if args.compile else None
            _, stats = measure(diffusers_stages(unet3d, inputs, args.steps, forward), device, args.warmup, args.runs)
        d3_work = args.steps * flops["diffusers_unet3d_call"]
        result["diffusers_unet3d"] = {"stages": add_mfu(stats, {"video": d3_work, "total": d3_work}, peak),
                                      "step_seconds": stats["video"]["seconds"] / args.steps}
    result["default_step_seconds"] = result["modes"]["default"]["video"]["seconds"] / args.steps
    result["ratios"] = {
        "reference_over_default": result["modes"]["reference"]["total"]["seconds"]
        / result["modes"]["default"]["total"]["seconds"],
        "diffusers_over_default_step": result["diffusers_unet3d"]["step_seconds"] / result["default_step_seconds"],
    }
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs_before
    result["compile"] = {"enabled": args.compile, "graphs": graphs, "error_on_recompile": args.compile}
    if args.compile:
        # DPM reuses the default's graphs; deepcache adds two (whole steps that keep their deep features, cached steps)
        stages = ["prior", "video", "decode", "diffusers step"] + (
            ["deepcache whole step", "deepcache cached step"] if "deepcache" in args.preset else [])
        result["notes"].append(f"torch.compile: {graphs} graphs for {len(stages)} stages ({', '.join(stages)}), full "
                               f"graph, static shapes, error_on_recompile=True: no stage recompiled.")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.size == "full" and args.device == "cpu" and not args.force:
        with torch.device("meta"):
            flops = workload_flops(HiGenUNet3DModel(), sd21_vae(), None, args.frames)
        work = stage_work(flops, args.steps, args.frames)
        print(f"The full size is a GPU workload: one generation is {work['total'] / 1e15:.2f} PFLOP "
              f"({_flop(flops['unet_video_call'])} per {args.frames}-frame UNet call, {_flop(flops['unet_prior_call'])}"
              f" per 1-frame call, {_flop(flops['vae_decode_frame'])} per decoded frame), hours on a CPU. Run "
              f"`python -m higen_core.benchmark --size tiny` for the CPU comparison, or add --force.")
        return 2
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # as the official inference sets it; every shape here is static
    result = run(args)
    print_report(result)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
        print(f"Figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
