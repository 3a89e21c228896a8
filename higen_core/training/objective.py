# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""What one training step optimises: which kind of batch each process and step takes (joint image-video training,
Section 3.4), the per-kind gradient factors, the model's inputs of a batch and the diffusion loss."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor

from ..unet_higen import HiGenUNet3DModel
from .config import ConfigError, TrainConfig
from .latents import encode_pixels, encode_text, higen_conditions, sample_latents
from .models import Components

KINDS = ("video", "image")


# ----------------------------------------------------------------------------------------------------------------
# Joint training: who trains on what


def step_kind(step: int, image_fraction: float) -> str:
    """One process: whether optimizer step `step` takes an image or a video batch. Images fall on the steps where
    floor(step * fraction) increases, so every window of steps holds the fraction, and a resumed run agrees."""
    return "image" if math.floor((step + 1) * image_fraction) > math.floor(step * image_fraction) else "video"


def process_kinds(num_processes: int, image_fraction: float) -> list[str]:
    """Several processes: the first round(processes * fraction) (halves round up) take image batches, the rest
    video batches."""
    images = int(num_processes * image_fraction + 0.5)
    if 0 < image_fraction < 1 and images in (0, num_processes):
        raise ConfigError("image_fraction", f"{image_fraction} of {num_processes} processes rounds to "
                          f"{images} image processes: joint training needs both kinds, so change it.")
    return ["image"] * images + ["video"] * (num_processes - images)


@dataclass(frozen=True)
class Roles:
    """Who trains on what. One process interleaves images and videos by step; several split the kinds by process,
    and each kind's data is split among the processes that train on it."""

    used: list[str]  # the kinds the run trains on (both in joint training)
    by_process: list[str] | None  # several processes: the kind of each
    mine: str | None  # several processes: this process's kind
    kinds: list[str]  # the kinds this process trains on
    shard: dict[str, tuple[int, int]]  # per kind: (index, count) of this process among those reading its data

    def kind_of_step(self, step: int, image_fraction: float) -> str:
        return self.mine or step_kind(step, image_fraction)


def assign_roles(num_processes: int, rank: int, image_fraction: float) -> Roles:
    used = [k for k in KINDS if image_fraction != (0.0 if k == "image" else 1.0)]
    by_process = process_kinds(num_processes, image_fraction) if num_processes > 1 else None
    mine = by_process[rank] if by_process else None
    kinds = [mine] if mine else used
    shard = {k: (by_process[:rank].count(k), by_process.count(k)) if by_process else (0, 1) for k in kinds}
    return Roles(used, by_process, mine, kinds, shard)


def scale_gradients_by_kind(unet: HiGenUNet3DModel) -> dict[str, float]:
    """Multiply each parameter's gradient, as it is computed, by factors[its kind]; returns the factors to set.

    The hooks run before DDP averages the gradients across processes, so a process training on images adds nothing
    to the temporal and HiGen parameters while the video processes train them, and the 0.2 on the spatial
    parameters applies to every process's contribution alike. (AdamW divides a constant factor out again: only a
    factor of 0, which freezes the parameters, and the share of the clipped norm change the steps it takes.)"""
    factors = {"spatial": 1.0, "temporal": 1.0, "higen": 1.0}
    for name, param in unet.named_parameters():
        if param.requires_grad:  # frozen ones (the base under LoRA, the ablation's) get no gradient to scale
            kind = unet.parameter_kind(name)
            param.register_hook(lambda grad, kind=kind: grad * factors[kind])
    return factors


# ----------------------------------------------------------------------------------------------------------------
# The objective


Generators = torch.Generator | list[torch.Generator] | None


def sample_generators(seed: int, step: int, micro_batch: int, keys: list[str],
                      device: torch.device) -> list[torch.Generator]:
    """One generator per sample, seeded by (run seed, step, micro-batch, the sample's key: its path). A sample's
    posterior draw, caption dropout, noise and timestep then depend on what it is and when it trains, not on which
    process trains it or beside which samples: N processes of batch B train exactly as one process of batch N x B."""
    seeds = [hashlib.sha256(f"{seed}/{step}/{micro_batch}/{key}".encode()).digest() for key in keys]
    return [torch.Generator(device).manual_seed(int.from_bytes(digest[:8], "little") >> 1) for digest in seeds]


def _uniform(generator: Generators, batch: int, device: torch.device, low: int | None = None,
             high: int | None = None) -> torch.Tensor:
    """(batch,) uniform floats in [0, 1), or integers in [low, high): one draw from each sample's generator when
    given a list, else `batch` draws from one stream."""
    def draw(count, g):
        if low is None:
            return torch.rand(count, generator=g, device=device)
        return torch.randint(low, high, (count,), generator=g, device=device)
    if isinstance(generator, list):
        return torch.cat([draw(1, g) for g in generator])
    return draw(batch, generator)


def diffusion_loss(unet, latents: torch.Tensor, conditions: dict, text_states: torch.Tensor, noise_scheduler,
                   offset_noise: float, generator: Generators = None, high_noise_fraction: float = 0.0,
                   high_noise_start: int = 850) -> torch.Tensor:
    """v-prediction MSE (float32) at uniformly drawn timesteps of the official schedule (zero terminal SNR), a
    share `high_noise_fraction` of them drawn from `high_noise_start` up instead. The noise gets offset noise per
    sample, channel and frame, as the pipeline's starting noise does. `generator`: one for the batch, or one per
    sample (`sample_generators`)."""
    batch, channels, frames = latents.shape[:3]
    device = latents.device
    noise = randn_tensor(latents.shape, generator=generator, device=device)
    noise = noise + offset_noise * randn_tensor((batch, channels, frames, 1, 1), generator=generator, device=device)
    last = noise_scheduler.config.num_train_timesteps
    timesteps = _uniform(generator, batch, device, 0, last)
    if high_noise_fraction > 0:
        # Where the input shows almost nothing, only the conditions can say where the shape goes.
        noisiest = _uniform(generator, batch, device, high_noise_start, last)
        chosen = _uniform(generator, batch, device) < high_noise_fraction
        timesteps = torch.where(chosen, noisiest, timesteps)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    target = noise_scheduler.get_velocity(latents, noise, timesteps)
    prediction = unet(noisy, timesteps, text_states, **conditions).sample
    return F.mse_loss(prediction.float(), target.float())


def model_inputs(batch: dict, components: Components, config: TrainConfig, width: int, device: torch.device,
                 generator: Generators = None) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """(clean latents (B, C, F, h, w), conditions, text states) of a pixel or latent-cache batch. `generator` draws the
    posterior sample and the dropouts: one for the batch, one per sample, or None (torch's global stream)."""
    if "moments" in batch:
        moments, rows = batch["moments"].to(device), batch.get("appearance")
    else:
        moments, rows = encode_pixels(components, batch["pixel_values"].to(device), width)
    latents = sample_latents(moments, components.vae.config.scaling_factor, generator)
    batch_size = latents.shape[0]
    # Caption dropout trains the unconditional prediction that classifier-free guidance needs.
    keep = _uniform(generator, batch_size, latents.device) >= config.text_dropout
    captions = [caption if k else "" for caption, k in zip(batch["captions"], keep.tolist())]
    conditions = higen_conditions(latents, rows, width, prior=config.structure_decoupling,
                                  motion_factor_measure=components.unet.config.motion_factor_measure,
                                  scaling_factor=components.vae.config.scaling_factor)
    if latents.shape[2] > 1 and config.uniform_motion_factors > 0:
        # Per-pair factors tell the model which frames change; inference's single γm does not, so the caption must.
        factors = conditions["motion_factors"]  # (B, F-1)
        uniform = (_uniform(generator, batch_size, latents.device) < config.uniform_motion_factors)[:, None]
        conditions["motion_factors"] = torch.where(uniform, factors.mean(dim=1, keepdim=True), factors)
    return latents, conditions, encode_text(components, captions, device)
