# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""The small frozen components a HiGen model of the shapes world is trained with, built and saved in the folder layout
that diffusers and transformers load:

    python -m higen_core.shapes.components --out DIR [--steps 1200] [--seed 0]
    python -m higen_core.shapes.components --out DIR --lighting --vae-from OLD/vae --steps 800 --learning-rate 6e-4 \
        [--appearance-steps 400]

* `DIR/vae`: an `AutoencoderKL` trained here on rendered shapes frames, 64x64 RGB <-> 4x16x16 latents (three levels,
  scale factor 4), its `scaling_factor` set to 1 / std of its latents so that the latents have unit variance.
* `DIR/tokenizer`: a CLIP tokenizer in which every word a caption can contain is one token (bytes for the rest).
* `DIR/text_encoder`: a seeded, random `CLIPTextModel` (hidden size 64). HiGen keeps its text encoder frozen; what it
  needs is that different captions give clearly different states, which `check_text_encoder` measures.
* `DIR/appearance`: a seeded `Dinov2Model` with its image processor; the trainer takes the cosine similarity of its
  CLS features between frames as the appearance matrix (Eq. 3 of the paper). By default it is random; with
  `--appearance-steps N` it is trained contrastively on the world's lit clips (`train_appearance_model`), and then
  sees a change of light on every background, which the random one sees on grey backgrounds only, and sees past
  what the captions name.
  `check_appearance` measures how the similarity falls as a shape changes colour or moves, and as the light changes.
* `DIR/report.json`: the measurements (reconstruction error, latent statistics, the checks, the motion factors of
  shapes clips, sizes, CPU time) and `DIR/reconstructions.png` (rendered frames over their reconstructions).

Weights are saved in float32: the three models together take about 5 MB.

With `--lighting` the VAE also sees frames whose light has changed (the world's `--lighting`), which it must learn to
draw: an autoencoder trained without them snaps every grey between 83 and 128 to grey or black.
`--vae-from` continues training an existing VAE instead of starting afresh and keeps its scaling factor, so that a
HiGen model trained on its latents carries over (the text encoder, tokenizer and DINO are rebuilt from the seed,
identical to the ones built before, and so is a DINO trained for the same steps).

`--text-length N` (16 to 77; default 77, CLIP's) makes the tokenizer pad prompts to N tokens and gives the text encoder
N positions: the UNet's cross-attention then sees N text states. Every caption of the world fits in 16. The encoder's
states for those tokens are the 77-position encoder's (same seed; its attention is causal), so only the padding the
UNet attends over changes; in the shapes world 16 taught the motion words more strongly from the same steps
(`recipe.md`).

For training, point the trainer's `vae`, `text_encoder`, `tokenizer` and `appearance_model` fields at the subfolders.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from PIL import Image
from transformers import BitImageProcessorPil, CLIPTextConfig, CLIPTextModel, CLIPTokenizer, Dinov2Config, Dinov2Model

from ..conditioning import motion_factors_from_latents
from .world import (
    BACKGROUNDS,
    COLOURS,
    SHAPE_COLOURS,
    Scene,
    SceneObject,
    background_rgb,
    parse_caption,
    render_video,
    sample_scene,
    vocabulary,
)
from ..testing import tiny_tokenizer

FRAME_SIZE = 64
CLIP_FRAMES = 8
VAE_CONFIG = {
    "in_channels": 3, "out_channels": 3, "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3, "block_out_channels": (32, 64, 64), "layers_per_block": 1,
    "latent_channels": 4, "norm_num_groups": 16, "sample_size": FRAME_SIZE,
    # Without the mid-block attention the autoencoder is fully convolutional, so it can train on crops (4x cheaper
    # per sample) and still be exact on whole frames.
    "mid_block_add_attention": False,
}
# Stable Diffusion's KL weight (on the KL summed over the latent against the error summed over the pixels): the
# reconstruction comes first; the scaling factor, not the KL, gives the latents unit variance.
KL_WEIGHT = 1e-6
SHAPE_WEIGHT = 8.0  # loss weight of shape pixels against background pixels
TEXT_WIDTH = 64
CLIP_TEXT_LENGTH = 77  # CLIP's context: the text states the UNet sees unless the tokenizer is given fewer
# The world's longest captions, two shapes moving at a speed ("a red circle and a green star move left quickly on a
# grey background": 14 words), with CLIP's start and end tokens: the shortest context that cuts no caption.
CAPTION_TOKENS = 16
# A random CLIP gives its token and position embeddings the same small scale, so after the attention layers have
# mixed the sequence a one-word change barely shows. Scaling the token embeddings up lets each word dominate its own
# state (and, through causal attention, change every later one).
TEXT_INIT_FACTOR = 3.0
TOKEN_EMBEDDING_SCALE = 10.0
APPEARANCE_SIZE = 32
# A random ViT at the default initialiser range (0.02) maps every frame to nearly the same CLS feature (cosine
# similarities above 0.998 in the shapes world). At 1.0 the first-to-last similarity of a colour change falls to
# about 0.5, a move's to about 0.8, so the appearance matrix spans a useful part of [0, 1].
APPEARANCE_INIT_RANGE = 1.0
# The trained appearance model (`train_appearance_model`) starts from ViT's usual initialiser range and learns with
# views shifted by up to 3 of its 32 pixels (a tenth of the frame), a little noise and SimCLR's temperature.
# 400 steps leave the similarity graded: a change of light by 0.1 ends a clip near 0.5, by 0.2 near 0 (recipe.md).
TRAINED_APPEARANCE_INIT_RANGE = 0.02
SSL_SHIFT, SSL_NOISE, SSL_TEMPERATURE = 3, 0.05, 0.1
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
# Seed streams (np.random.SeedSequence([seed, stream])), apart from the dataset's (0: videos, 1: images) and the
# evaluation's (2).
TRAIN_STREAM, VALIDATION_STREAM = 3, 4


# ---------------------------------------------------------------------------------------------------------------
# Data


def _scene_seeds(seed: int, stream: int, count: int) -> list[int]:
    return [int(s) for s in np.random.SeedSequence([seed, stream]).generate_state(count)]


def random_frames(rng: np.random.Generator, count: int, size: int = FRAME_SIZE,
                  lighting: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(count, size, size, 3) uint8 frames, each a random frame of a fresh scene's clip (so every motion's in-between
    states are seen: colour blends, turned and grown shapes, and with `lighting` changes of light part-way), and
    (count, size, size) bool masks of their shapes and outlines."""
    frames, masks = [], []
    for scene_seed in rng.integers(0, 2**63, size=count):
        scene = sample_scene(int(scene_seed), lighting)
        index = rng.integers(CLIP_FRAMES)
        frame = render_video(scene, CLIP_FRAMES, size)[index]
        frames.append(frame)
        background = np.array(background_rgb(scene, index / (CLIP_FRAMES - 1)), dtype=np.uint8)
        masks.append(_dilate((frame != background).any(-1)))
    return np.stack(frames), np.stack(masks)


def _dilate(mask: np.ndarray) -> np.ndarray:
    """The mask grown by one pixel (4-neighbours), so that it holds both sides of every outline."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def to_pixels(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-1, 1], the VAE's range."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def validation_frames(seed: int, count: int = 256) -> np.ndarray:
    return random_frames(np.random.default_rng(np.random.SeedSequence([seed, VALIDATION_STREAM])), count)[0]


# ---------------------------------------------------------------------------------------------------------------
# VAE


def build_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(**VAE_CONFIG)


def train_vae(vae: AutoencoderKL, steps: int, seed: int = 0, batch_size: int = 16, crop: int = 32,
              full_frame_fraction: float = 0.25, learning_rate: float = 2e-3, log_every: int = 100,
              lighting: bool = False) -> list[dict]:
    """Train on random crops of fresh frames, then on whole frames for the last `full_frame_fraction` of the steps
    (so that the group norms see whole-frame statistics). AdamW with a short warm-up and a cosine decay. Returns the
    training log."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, TRAIN_STREAM]))
    torch.manual_seed(seed)  # the posterior's sampling noise
    optimizer = torch.optim.AdamW(vae.parameters(), lr=learning_rate, weight_decay=0.0)
    warmup = max(1, steps // 50)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    full_from = int(steps * (1 - full_frame_fraction))
    log, start = [], time.process_time()
    vae.train()
    for step in range(steps):
        whole = step >= full_from
        # A whole frame costs four crops: half as many of them keep the step time within 2x.
        frames, masks = random_frames(rng, batch_size // 2 if whole else batch_size, lighting=lighting)
        if not whole:
            corners = rng.integers(0, FRAME_SIZE - crop + 1, size=(len(frames), 2))
            frames = np.stack([f[t:t + crop, l:l + crop] for f, (t, l) in zip(frames, corners)])
            masks = np.stack([m[t:t + crop, l:l + crop] for m, (t, l) in zip(masks, corners)])
        pixels = to_pixels(np.ascontiguousarray(frames))
        # Shapes cover a few percent of a frame and carry everything a caption says; an unweighted loss spends most
        # of its early steps on the uniform backgrounds.
        weights = 1.0 + (SHAPE_WEIGHT - 1.0) * torch.from_numpy(masks)[:, None].float()
        posterior = vae.encode(pixels).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        mse = F.mse_loss(reconstruction, pixels, reduction="none")
        # L1 as well as L2 (Stable Diffusion's VAE trains on L1): it keeps pushing on small errors, which removes the
        # faint halos of colour that an L2 loss leaves around shapes.
        error = mse + (reconstruction - pixels).abs()
        weighted = (error * weights).mean() / weights.mean()
        kl = posterior.kl().mean() / pixels[0].numel()  # per pixel value, like the MSE
        loss = weighted + KL_WEIGHT * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            # The MSE in [0, 1] pixel units, as reported everywhere else.
            log.append({"step": step + 1, "mse": mse.mean().item() / 4, "kl": kl.item(), "whole_frames": whole,
                        "cpu_seconds": round(time.process_time() - start, 1)})
            print(json.dumps(log[-1]), flush=True)
    return log


@torch.no_grad()
def encode(vae: AutoencoderKL, frames: np.ndarray, chunk_size: int = 64, sample: bool = False) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> unscaled latents (N, 4, H/4, W/4): the posterior's mode, or a draw from it."""
    vae.eval()
    latents = []
    for chunk in to_pixels(frames).split(chunk_size):
        posterior = vae.encode(chunk).latent_dist
        latents.append(posterior.sample() if sample else posterior.mode())
    return torch.cat(latents)


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, frames: np.ndarray, chunk_size: int = 64) -> np.ndarray:
    """Frames through the VAE (posterior mode), as uint8."""
    decoded = torch.cat([vae.decode(z).sample for z in encode(vae, frames).split(chunk_size)])
    return ((decoded.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def _nearest_names(frames: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) index of the nearest named colour of every pixel."""
    palette = np.array(list(COLOURS.values()), dtype=np.float32)
    return np.linalg.norm(frames[..., None, :].astype(np.float32) - palette, axis=-1).argmin(-1)


def _edges(frames: np.ndarray) -> np.ndarray:
    """(N, H, W) bool: pixels with a differently coloured 4-neighbour, i.e. on a shape's outline."""
    colour = frames.astype(np.int32) @ np.array([1, 256, 65536])
    edge = np.zeros(colour.shape, dtype=bool)
    edge[:, 1:] |= colour[:, 1:] != colour[:, :-1]
    edge[:, :-1] |= colour[:, 1:] != colour[:, :-1]
    edge[:, :, 1:] |= colour[:, :, 1:] != colour[:, :, :-1]
    edge[:, :, :-1] |= colour[:, :, 1:] != colour[:, :, :-1]
    return edge


def reconstruction_report(frames: np.ndarray, reconstructions: np.ndarray) -> dict:
    """MSE in [0, 1] units over all pixels and over outline pixels, and the share of pixels (all, shape, outline)
    whose nearest named colour survives the round trip."""
    error = ((frames.astype(np.float32) - reconstructions.astype(np.float32)) / 255.0) ** 2
    same = _nearest_names(frames) == _nearest_names(reconstructions)
    edge = _edges(frames)
    shape_colours = np.array([name in SHAPE_COLOURS for name in COLOURS])
    on_shape = shape_colours[_nearest_names(frames)]
    return {"mse": float(error.mean()), "edge_mse": float(error[edge].mean()),
            "colour_kept": float(same.mean()), "shape_colour_kept": float(same[on_shape].mean()),
            "edge_colour_kept": float(same[edge].mean()), "frames": len(frames)}


def save_reconstructions(path: Path, frames: np.ndarray, reconstructions: np.ndarray, count: int = 12) -> None:
    """One PNG: rendered frames on the top row, their reconstructions below, at 2x."""
    grid = np.concatenate([np.concatenate(list(frames[:count]), axis=1),
                           np.concatenate(list(reconstructions[:count]), axis=1)], axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer and text encoder


def check_text_length(text_length: int, name: str = "text_length") -> None:
    """The number of text states must hold the world's longest caption and fit CLIP's positions."""
    if not CAPTION_TOKENS <= text_length <= CLIP_TEXT_LENGTH:
        raise ValueError(f"{name} {text_length}: give {CAPTION_TOKENS} to {CLIP_TEXT_LENGTH} (fewer than "
                         f"{CAPTION_TOKENS} tokens would cut the world's longest captions; CLIP has {CLIP_TEXT_LENGTH} "
                         f"positions).")


def build_tokenizer(words: list[str] | None = None, text_length: int = CLIP_TEXT_LENGTH) -> CLIPTokenizer:
    """A CLIP tokenizer whose vocabulary is every byte plus each of `words` (default: the shapes vocabulary) as one
    token, so that each caption word reaches the text encoder whole. It pads (and cuts) prompts to `text_length`
    tokens, the number of text states the UNet's cross-attention sees."""
    check_text_length(text_length)
    words = words if words is not None else vocabulary()
    tokenizer = tiny_tokenizer(words)
    split = [word for word in words if len(tokenizer.tokenize(word)) != 1]
    if split:
        raise RuntimeError(f"the tokenizer splits {split}: every word must be one token.")
    tokenizer.model_max_length = text_length
    return tokenizer


def build_text_encoder(tokenizer: CLIPTokenizer, seed: int = 0) -> CLIPTextModel:
    """A seeded, random CLIP text encoder with as many positions as the tokenizer pads to. The weights are drawn for
    CLIP's 77 positions whatever that length, then the positions are cut to it: CLIP's text attention is causal, so
    the shorter encoder gives exactly the full one's states for the first tokens, and the two differ only in how many
    states the UNet sees."""
    check_text_length(tokenizer.model_max_length, "the tokenizer's model_max_length")
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=CLIP_TEXT_LENGTH,
        initializer_factor=TEXT_INIT_FACTOR, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = CLIPTextModel(config)
    with torch.no_grad():
        model.embeddings.token_embedding.weight.mul_(TOKEN_EMBEDDING_SCALE)
    length = tokenizer.model_max_length
    if length < CLIP_TEXT_LENGTH:
        state = model.state_dict()
        key = next(k for k in state if k.endswith("embeddings.position_embedding.weight"))
        state[key] = state[key][:length]
        config.max_position_embeddings = length
        model = CLIPTextModel(config)
        model.load_state_dict(state, strict=True)
    return model.eval()


@torch.no_grad()
def check_text_encoder(tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel) -> dict:
    """Captions that differ in one word (colour, shape, motion, speed, background), against a base caption: the
    cosine similarity of their whole (77, D) states, and of the states at the changed word itself."""
    base = "a red circle moves left quickly on a black background"
    changes = {"colour": ("red", "green"), "shape": ("circle", "star"), "motion": ("left", "right"),
               "speed": ("quickly", "slowly"), "background": ("black", "cyan")}
    captions = [base] + [base.replace(old, new) for old, new in changes.values()]
    for caption in captions:
        parse_caption(caption)  # every variant is a caption of the world
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt")
    states = text_encoder(ids.input_ids)[0]
    whole = F.normalize(states.flatten(1), dim=-1)
    report = {}
    for i, name in enumerate(changes, start=1):
        changed = (ids.input_ids[i] != ids.input_ids[0]).nonzero()[:, 0]
        word = F.cosine_similarity(states[i, changed], states[0, changed], dim=-1).mean()
        report[name] = {"states_cosine": round(float(whole[i] @ whole[0]), 4), "word_cosine": round(float(word), 4)}
    return report


# ---------------------------------------------------------------------------------------------------------------
# Appearance model


def build_appearance_model(seed: int = 0, init_range: float = APPEARANCE_INIT_RANGE
                           ) -> tuple[Dinov2Model, BitImageProcessorPil]:
    """A two-layer DINOv2 on 32x32 frames (8x8 patches of 4 pixels) and the processor that resizes frames to it.
    Frames are downsized rather than cut into 8-pixel patches: a shape that moves a whole patch would otherwise
    look almost the same to a random patch embedding."""
    torch.manual_seed(seed)
    config = Dinov2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2,
                          image_size=APPEARANCE_SIZE, patch_size=4, initializer_range=init_range)
    size = {"height": APPEARANCE_SIZE, "width": APPEARANCE_SIZE}
    processor = BitImageProcessorPil(size=size, crop_size=size, do_center_crop=False, image_mean=IMAGENET_MEAN,
                                  image_std=IMAGENET_STD, resample=Image.BICUBIC)
    return Dinov2Model(config).eval(), processor


def _appearance_input(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> the model's (N, 3, 32, 32) input, preprocessed as the trainer's AppearanceEncoder does."""
    pixels = (to_pixels(frames) + 1) / 2
    pixels = F.interpolate(pixels, size=(APPEARANCE_SIZE,) * 2, mode="bicubic", align_corners=False, antialias=True)
    return (pixels.clamp(0, 1) - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        IMAGENET_STD).view(1, 3, 1, 1)


def _shifted_view(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A view for contrastive training: each frame shifted by up to SSL_SHIFT pixels (edges repeated), plus a little
    noise. No colour jitter: unlike DINO on photographs, this model is meant to see changes of light and colour."""
    n, pad = len(pixels), SSL_SHIFT
    padded = F.pad(pixels, (pad,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).tolist()
    size = pixels.shape[-1]
    views = torch.stack([padded[i, :, top:top + size, left:left + size] for i, (top, left) in enumerate(offsets)])
    return views + SSL_NOISE * torch.randn(views.shape, generator=generator)


def _lit_clips(rng: np.random.Generator, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(count, CLIP_FRAMES, 3, 32, 32) appearance inputs of fresh lit-world clips, and whether each clip's light
    changes."""
    clips, changes = [], []
    for scene_seed in rng.integers(0, 2**63, size=count):
        scene = sample_scene(int(scene_seed), lighting=True)
        clips.append(_appearance_input(render_video(scene, CLIP_FRAMES, FRAME_SIZE)))
        changes.append(scene.light != 0.0)
    return torch.stack(clips), torch.tensor(changes)


def _contrastive_loss(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Supervised-contrastive InfoNCE over (N, D) unit features: each one's log-probability of its positives (the
    others with its label) against every other feature, averaged over its positives and then over all features."""
    logits = features @ features.T / SSL_TEMPERATURE
    self_mask = torch.eye(len(features), dtype=torch.bool)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_probability = logits - logits.logsumexp(dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    return -(log_probability.masked_fill(~positives, 0).sum(1) / positives.sum(1)).mean()


def train_appearance_model(model: Dinov2Model, steps: int, seed: int = 0, batch_size: int = 128,
                           learning_rate: float = 1e-3, pool: int = 1500, log_every: int = 250) -> list[dict]:
    """Contrastive training of the world's DINO (in place) so that its similarity sees a change of light, the change
    no caption names, and not what the captions say. Each step takes `batch_size` clips of the lit world (from a pool
    of `pool`), two random frames of each and two views of each frame (shifted by up to SSL_SHIFT pixels). Frames of
    a clip whose light stays the same are one instance: the model learns to see past moves, turns, growth and colour
    changes. Frames of a clip whose light changes are each their own instance: the model must tell them apart by
    their light. A projection head is dropped afterwards. A random ViT barely sees a change of light on black or cyan
    backgrounds; trained so, the first-to-last similarity of a clip stays near 1 unless its light changes
    (`check_appearance`), so a clip's appearance matrix reads as the appearance factor of the change. Returns the
    training log."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, TRAIN_STREAM, 1]))
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    width = model.config.hidden_size
    head = torch.nn.Sequential(torch.nn.Linear(width, 2 * width), torch.nn.GELU(), torch.nn.Linear(2 * width, width))
    parameters = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.05)
    clips, light_changes = _lit_clips(rng, pool)
    log, start = [], time.process_time()
    model.train()
    for step in range(steps):
        chosen = torch.randint(len(clips), (batch_size,), generator=generator)  # (B,)
        times = torch.stack([torch.randperm(CLIP_FRAMES, generator=generator)[:2] for _ in chosen])  # (B, 2)
        frames = clips[chosen[:, None], times].flatten(0, 1)  # (2B, 3, 32, 32): clip b's frames at 2b, 2b + 1
        # A label per frame: its clip's when the clip's light holds, its own when it changes (a clip drawn twice in
        # one batch counts as two clips, rare with a pool ten times the batch).
        frame_ids = torch.arange(2 * batch_size)
        labels = torch.where(light_changes[chosen].repeat_interleave(2), frame_ids, frame_ids // 2 * 2)
        views = torch.cat([_shifted_view(frames, generator) for _ in range(2)])  # (4B, 3, 32, 32)
        features = F.normalize(head(model(pixel_values=views).pooler_output), dim=-1)
        loss = _contrastive_loss(features, labels.repeat(2))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            log.append({"step": step + 1, "loss": loss.item(), "cpu_seconds": round(time.process_time() - start, 1)})
            print(json.dumps(log[-1]), flush=True)
    model.eval()
    return log


@torch.no_grad()
def appearance_features(model: Dinov2Model, frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, D) pooled CLS features, preprocessed as the trainer's AppearanceEncoder does."""
    return model(pixel_values=_appearance_input(frames)).pooler_output


def _similarity_to_first(model: Dinov2Model, frames: np.ndarray) -> np.ndarray:
    features = F.normalize(appearance_features(model, frames), dim=-1)
    return (features @ features[0]).numpy()


@torch.no_grad()
def check_appearance(model: Dinov2Model, seed: int = 0, count: int = 64) -> dict:
    """Cosine similarity of frame t's CLS feature to frame 0's, t = 0..7: for one red square changing colour to blue
    and for the same square moving right, each averaged over `count` placements, sizes and backgrounds; the
    first-to-last similarity of shapes clips per motion; and per background, that of the same clips unlit and with
    the light changed 0.15 of the way toward black or white (what γa is trained on: `world.LIGHT_CHANGE`)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, VALIDATION_STREAM, 1]))
    curves = {"changes colour": [], "moves right": []}
    for _ in range(count):
        x, y, size = rng.uniform(0.25, 0.35), rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.35)
        background = str(rng.choice(["black", "grey", "cyan"]))
        for motion, target in (("changes colour", "blue"), ("moves right", None)):
            scene = Scene(0, (SceneObject("square", "red", x, y, size, target),), motion, "slowly", background)
            curves[motion].append(_similarity_to_first(model, render_video(scene, CLIP_FRAMES, FRAME_SIZE)))
    last: dict[str, list[float]] = {}
    light: dict[str, dict[str, list[float]]] = {name: {} for name in BACKGROUNDS}
    for scene_seed in _scene_seeds(seed, VALIDATION_STREAM, 4 * count):
        scene = sample_scene(scene_seed)
        first_to_last = float(_similarity_to_first(model, render_video(scene, CLIP_FRAMES, FRAME_SIZE))[-1])
        last.setdefault(scene.motion, []).append(first_to_last)
        light[scene.background].setdefault("unlit", []).append(first_to_last)
        for change, amount in (("darker", -0.15), ("brighter", 0.15)):
            if change == "darker" and scene.background == "black":
                continue  # black cannot darken
            lit_clip = render_video(dataclasses.replace(scene, light=amount), CLIP_FRAMES, FRAME_SIZE)
            light[scene.background].setdefault(change, []).append(float(_similarity_to_first(model, lit_clip)[-1]))
    return {
        "similarity_to_first_frame": {k: np.round(np.mean(v, axis=0), 3).tolist() for k, v in curves.items()},
        "first_to_last_by_motion": {k: round(float(np.mean(v)), 3) for k, v in sorted(last.items())},
        "first_to_last_range": [round(float(min(min(v) for v in last.values())), 3), 1.0],
        "first_to_last_by_light": {background: {k: round(float(np.mean(v)), 3) for k, v in changes.items()}
                                   for background, changes in light.items() if changes},
    }


# ---------------------------------------------------------------------------------------------------------------
# Measurements on clips


def motion_factor_statistics(vae: AutoencoderKL, scaling_factor: float, seed: int = 0, count: int = 128) -> dict:
    """Percentiles of the motion factors (||z_f - z_f+1||, Section 3.3) of shapes clips, 8 frames at 64x64, as the
    trainer measures them: what a model's `motion_factor_range` should cover."""
    factors = []
    for scene_seed in _scene_seeds(seed, VALIDATION_STREAM, count):
        latents = encode(vae, render_video(sample_scene(scene_seed), CLIP_FRAMES, FRAME_SIZE)) * scaling_factor
        factors.append(motion_factors_from_latents(latents.permute(1, 0, 2, 3)[None])[0])
    values = torch.cat(factors).numpy()
    return {f"p{q}": float(np.percentile(values, q)) for q in (5, 25, 50, 75, 95)} | {"clips": count,
                                                                                    "frames": CLIP_FRAMES}


def folder_megabytes(folder: Path) -> float:
    return round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20, 3)


# ---------------------------------------------------------------------------------------------------------------


def build_components(out: str | Path, steps: int = 1200, seed: int = 0, batch_size: int = 16,
                     measure: int = 256, lighting: bool = False, vae_from: str | Path | None = None,
                     learning_rate: float = 2e-3, text_length: int = CLIP_TEXT_LENGTH,
                     appearance_steps: int = 0) -> dict:
    """Build, check and save every component under `out`; returns (and writes) the report. `measure` sets the size
    of the measurements: validation frames (the reconstruction error and the scaling factor), clips for the motion
    factors (half as many) and scenes for the appearance check (a quarter). `lighting`, `vae_from`, `text_length`
    and `appearance_steps`: see the module's docstring."""
    check_text_length(text_length)  # before the minutes of VAE training
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    wall, cpu = time.time(), time.process_time()

    # 1. VAE: train, then set the scaling factor from the spread of posterior draws (what the trainer denoises); a
    #    continued VAE keeps its own, which the latents of the models trained on it are scaled by.
    vae = AutoencoderKL.from_pretrained(vae_from) if vae_from is not None else build_vae(seed)
    log = train_vae(vae, steps, seed=seed, batch_size=batch_size, learning_rate=learning_rate, lighting=lighting)
    train_cpu = time.process_time() - cpu
    frames = validation_frames(seed, measure)
    latents = encode(vae, frames, sample=True)
    scaling_factor = vae.config.scaling_factor if vae_from is not None else 1.0 / float(latents.std())
    vae.register_to_config(scaling_factor=scaling_factor)
    reconstructions = reconstruct(vae, frames)
    vae.save_pretrained(out / "vae")
    save_reconstructions(out / "reconstructions.png", frames, reconstructions)

    # 2. Tokenizer and text encoder.
    tokenizer = build_tokenizer(text_length=text_length)
    text_encoder = build_text_encoder(tokenizer, seed)
    tokenizer.save_pretrained(out / "tokenizer")
    text_encoder.save_pretrained(out / "text_encoder")

    # 3. Appearance model and its processor: random, or trained contrastively on the world's lit clips.
    if appearance_steps > 0:
        appearance, processor = build_appearance_model(seed, TRAINED_APPEARANCE_INIT_RANGE)
        appearance_log = train_appearance_model(appearance, appearance_steps, seed)
    else:
        (appearance, processor), appearance_log = build_appearance_model(seed), []
    appearance.save_pretrained(out / "appearance")
    processor.save_pretrained(out / "appearance")

    report = {
        "seed": seed,
        "vae": {"from": str(vae_from) if vae_from is not None else None, "lighting": lighting, "steps": steps,
                "learning_rate": learning_rate, "batch_size": batch_size,
                "parameters": sum(p.numel() for p in vae.parameters()),
                "reconstruction": reconstruction_report(frames, reconstructions),
                "scaling_factor": scaling_factor,
                "latent_mean": float(latents.mean()), "latent_std": float(latents.std()),
                # What the UNet sees, per latent channel (the pipeline scales but does not shift).
                "scaled_channel_mean": (latents * scaling_factor).mean((0, 2, 3)).tolist(),
                "scaled_channel_std": (latents * scaling_factor).std((0, 2, 3)).tolist(),
                "train_cpu_seconds": round(train_cpu, 1), "log": log},
        "text_encoder": {"parameters": sum(p.numel() for p in text_encoder.parameters()),
                         "vocabulary": len(tokenizer), "text_length": text_length,
                         "one_word_changes": check_text_encoder(tokenizer, text_encoder)},
        "appearance": {"parameters": sum(p.numel() for p in appearance.parameters()),
                       "steps": appearance_steps, "log": appearance_log,
                       **check_appearance(appearance, seed, count=max(2, measure // 4))},
        "motion_factors": motion_factor_statistics(vae, scaling_factor, seed, count=max(2, measure // 2)),
        "megabytes": {name: folder_megabytes(out / name) for name in ("vae", "tokenizer", "text_encoder",
                                                                     "appearance")},
        "cpu_seconds": round(time.process_time() - cpu, 1),
        "wall_seconds": round(time.time() - wall, 1),
        "threads": torch.get_num_threads(),
    }
    report["megabytes"]["total"] = round(sum(report["megabytes"].values()), 3)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m higen_core.shapes.components", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for vae/, tokenizer/, text_encoder/, appearance/")
    parser.add_argument("--steps", type=int, default=1200, help="VAE training steps")
    parser.add_argument("--batch-size", type=int, default=16, help="VAE crops per step (whole frames: half)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every weight and of the training frames")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="VAE peak learning rate")
    parser.add_argument("--lighting", action="store_true",
                        help="the VAE also trains on frames whose light has changed (the world's --lighting)")
    parser.add_argument("--vae-from", default=None,
                        help="continue training this VAE folder (keeps its scaling factor) instead of a new one")
    parser.add_argument("--text-length", type=int, default=CLIP_TEXT_LENGTH,
                        help=f"text states the UNet sees: the tokenizer pads prompts to this many tokens "
                             f"({CAPTION_TOKENS} to {CLIP_TEXT_LENGTH}; default CLIP's {CLIP_TEXT_LENGTH})")
    parser.add_argument("--appearance-steps", type=int, default=0,
                        help="train the DINO contrastively on lit clips for this many steps (0: a random one; "
                             "400 sees light on every background)")
    args = parser.parse_args(argv)
    if args.appearance_steps < 0:
        parser.error(f"--appearance-steps {args.appearance_steps}: give 0 (a random DINO) or a number of steps.")
    try:
        check_text_length(args.text_length, "--text-length")
    except ValueError as error:
        parser.error(str(error))
    if args.vae_from is not None and not (Path(args.vae_from) / "config.json").is_file():
        parser.error(f"--vae-from {args.vae_from}: no VAE there; give the vae/ folder of built components "
                     f"(e.g. runs/shapes/components/vae).")
    report = build_components(args.out, args.steps, args.seed, args.batch_size, lighting=args.lighting,
                              vae_from=args.vae_from, learning_rate=args.learning_rate, text_length=args.text_length,
                              appearance_steps=args.appearance_steps)
    summary = {k: report[k] for k in ("megabytes", "motion_factors", "cpu_seconds", "wall_seconds")}
    summary["vae"] = {k: report["vae"][k] for k in ("reconstruction", "scaling_factor", "latent_mean",
                                                    "train_cpu_seconds")}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
