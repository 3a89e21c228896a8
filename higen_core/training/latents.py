# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""From a data batch to the UNet's inputs: VAE latents, text states and HiGen's conditions (Section 3.3), and the
optional latent cache that computes the expensive frozen-model parts once.

The VAE's posterior (its "moments": mean and log-variance) is what gets computed or cached; the latents are drawn
from it at every use, so training from the cache sees the same distribution as training from pixels.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ..conditioning import appearance_matrix_from_features, motion_factors_from_latents
from ..pipeline_higen import text_states
from .data import collate_skipping
from .models import Components

CACHE_MARKER = "complete"


@torch.no_grad()
def encode_text(components: Components, captions: list[str], device: torch.device) -> torch.Tensor:
    """(B, L, D) last hidden states of the frozen text encoder, as the pipeline computes them."""
    return text_states(components.tokenizer, components.text_encoder, captions).to(device)


@torch.no_grad()
def encode_pixels(components: Components, pixels: torch.Tensor, appearance_width: int,
                  chunk_size: int = 16) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, F, 3, H, W) frames in [-1, 1] -> (VAE moments (B, 2C, F, h, w) float32, appearance rows (B, F, width)
    for videos or None for images (F = 1))."""
    batch, frames = pixels.shape[:2]
    flat = pixels.flatten(0, 1).to(components.vae.device, components.vae.dtype)
    moments = torch.cat([components.vae.encode(chunk).latent_dist.parameters for chunk in flat.split(chunk_size)])
    moments = moments.float().unflatten(0, (batch, frames)).transpose(1, 2)
    rows = None
    if frames > 1:
        features = components.appearance(flat).unflatten(0, (batch, frames))  # (B, F, D)
        rows = appearance_matrix_from_features(features, appearance_width)
    return moments, rows


def sample_latents(moments: torch.Tensor, scaling_factor: float,
                   generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
    """A draw from the VAE posterior, scaled like the latents the pipeline denoises. (B, C, F, h, w). `generator`:
    one for the batch, one per sample, or None (torch's global stream)."""
    return DiagonalGaussianDistribution(moments).sample(generator) * scaling_factor


def higen_conditions(latents: torch.Tensor, appearance_rows: torch.Tensor | None, appearance_width: int,
                     prior: bool = True, motion_factor_measure: str = "scaled:l2",
                     scaling_factor: float | None = None) -> dict:
    """The UNet's condition inputs for a batch of clean latents (B, C, F, h, w).

    Images (F = 1) are spatial reasoning, conditioned as at inference: no prior, motion 0, an appearance row of
    ones. Videos are temporal reasoning: the middle frame's latent is the spatial prior, the motion factors are
    measured on the clip's latents (F-1 per clip, by `motion_factor_measure`, the model's) and the appearance rows
    come from the frozen image model.
    `prior=False` is the ablation without structure-level decoupling: no prior."""
    batch, _, frames = latents.shape[:3]
    if frames == 1:
        return {"spatial_prior": None, "motion_factors": torch.zeros(batch, device=latents.device),
                "appearance_matrix": torch.ones(batch, 1, appearance_width, device=latents.device)}
    return {"spatial_prior": latents[:, :, frames // 2] if prior else None,
            "motion_factors": motion_factors_from_latents(latents, motion_factor_measure, scaling_factor),
            "appearance_matrix": appearance_rows.to(latents.device)}


# --------------------------------------------------------------------------------------------------------------
# Latent cache: one safetensors file per sample, "moments" (2C, F, h, w) and, for videos, "appearance" (F, width).


class LatentCacheDataset(Dataset):
    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.captions = json.loads((self.folder / "captions.json").read_text())
        self.names = sorted(self.captions)
        if not self.names:
            raise ValueError(f"The latent cache {folder} is empty: every sample was skipped while building it.")

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict:
        name = self.names[i]
        return {**load_file(self.folder / name), "caption": self.captions[name], "path": name}


def collate_cached(samples: list[dict]) -> dict:
    batch = {"moments": torch.stack([s["moments"] for s in samples]), "captions": [s["caption"] for s in samples],
             "paths": [s["path"] for s in samples]}
    if "appearance" in samples[0]:
        batch["appearance"] = torch.stack([s["appearance"] for s in samples])
    return batch


def build_latent_cache(accelerator: Accelerator, dataset: Dataset, folder: Path, fingerprint: dict,
                       components: Components, appearance_width: int, batch_size: int,
                       num_workers: int) -> LatentCacheDataset:
    """Encode every usable sample of `dataset` once into `folder` (each process a share of it) and return the cache
    as a dataset. A complete cache made with the same fingerprint (models, data, frames, size) is reused."""
    key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
    if (folder / CACHE_MARKER).is_file() and (folder / CACHE_MARKER).read_text().strip() == key:
        return LatentCacheDataset(folder)
    if accelerator.is_main_process:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    accelerator.wait_for_everyone()

    rank, world = accelerator.process_index, accelerator.num_processes
    # Tar shards split themselves across processes; a map-style dataset is split here.
    sampler = None if isinstance(dataset, IterableDataset) else range(rank, len(dataset), world)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        collate_fn=collate_skipping)
    captions, count = {}, 0
    for batch in loader:
        if batch is None:
            continue
        dataset.stats.merge(batch.pop("skipped"))  # skips seen in DataLoader workers
        moments, rows = encode_pixels(components, batch["pixel_values"], appearance_width)
        for i, caption in enumerate(batch["captions"]):
            name = f"{rank:03d}-{count:08d}.safetensors"
            tensors = {"moments": moments[i].cpu().contiguous()}
            if rows is not None:
                tensors["appearance"] = rows[i].cpu().contiguous()
            save_file(tensors, folder / name)
            captions[name] = caption
            count += 1
    (folder / f"captions-{rank:03d}.json").write_text(json.dumps(captions))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        merged = {}
        for part in sorted(folder.glob("captions-*.json")):
            merged.update(json.loads(part.read_text()))
            part.unlink()
        (folder / "captions.json").write_text(json.dumps(merged))
        (folder / CACHE_MARKER).write_text(key + "\n")
    accelerator.wait_for_everyone()
    return LatentCacheDataset(folder)
