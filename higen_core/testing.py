# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""Tiny components built in code, so that the pipeline, the trainer and the studio run offline on a CPU in seconds.

Weights are random (seeded): these components exercise every code path, they do not make pictures. The studio shows
a banner when it runs on them.
"""

from __future__ import annotations

import itertools
import math

import torch
from diffusers import AutoencoderKL
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from .pipeline_higen import HiGenPipeline, default_scheduler
from .unet_higen import HiGenUNet3DModel

TINY_TEXT_WIDTH = 32


def tiny_unet_config(**overrides) -> dict:
    config = dict(
        block_out_channels=(32, 64), layers_per_block=1, attention_levels=(True, True), attention_head_dim=16,
        stem_attention_heads=2, text_embed_dim=TINY_TEXT_WIDTH, cross_attention_dim=TINY_TEXT_WIDTH,
        use_text_resampler=True, resampler_tokens=4, resampler_depth=1, appearance_width=8, num_frames=8,
        sample_size=(8, 8), motion_factor_range=(0.0, 100.0), motion_factor_measure="scaled:l2", dropout=0.0,
        temporal_dropout=0.0,
    )
    config.update(overrides)
    return config


def randomize_zero_initialised_(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    """Fill the parameters that start at zero (HiGen's additions, temporal layers, residual branches, the head) with
    small seeded noise, so that every path of a freshly built model shows in its output, as in the official
    reference data."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 0 and not param.any():
                param.copy_(torch.randn(param.shape, generator=generator) * std)
    return model


def tiny_unet(seed: int = 0, randomize: bool = True, **overrides) -> HiGenUNet3DModel:
    torch.manual_seed(seed)
    unet = HiGenUNet3DModel(**tiny_unet_config(**overrides))
    return (randomize_zero_initialised_(unet, seed) if randomize else unet).eval()


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    """A 2-level VAE (scale factor 2): 16x16 pixels <-> 4x8x8 latents."""
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 32), layers_per_block=1,
        latent_channels=4, norm_num_groups=32, sample_size=16,
    ).eval()


def _byte_alphabet() -> list[str]:
    """The 256 printable characters byte-level BPE stands for bytes with (GPT-2's mapping)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _apply_merges(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one word: merge the adjacent pair of lowest rank (leftmost on ties) until none is left."""
    while True:
        pairs = [(ranks.get(pair, math.inf), i) for i, pair in enumerate(itertools.pairwise(pieces))]
        rank, i = min(pairs, default=(math.inf, 0))
        if rank == math.inf:
            return pieces
        pieces = pieces[:i] + [pieces[i] + pieces[i + 1]] + pieces[i + 2:]


def tiny_tokenizer(words: list[str] | None = None) -> CLIPTokenizer:
    """A CLIP tokenizer whose vocabulary is every single byte plus, if given, whole `words` (one token each)."""
    alphabet = _byte_alphabet()
    vocab = ["<|startoftext|>", "<|endoftext|>"] + alphabet + [c + "</w>" for c in alphabet]
    ranks: dict[tuple[str, str], int] = {}
    for word in words or []:
        # Add a merge only after encoding the word with the merges so far: then it is the one byte-pair encoding
        # applies next, and an earlier word's merge ("qu" of "quickly") cannot split a later word ("square").
        characters = list(word[:-1]) + [word[-1] + "</w>"]
        pieces = _apply_merges(characters, ranks)
        while len(pieces) > 1:
            ranks[(pieces[0], pieces[1])] = len(ranks)
            if pieces[0] + pieces[1] not in vocab:
                vocab.append(pieces[0] + pieces[1])
            pieces = _apply_merges(characters, ranks)
    return CLIPTokenizer(vocab={token: i for i, token in enumerate(vocab)}, merges=list(ranks), pad_token="!",
                         model_max_length=77)


def tiny_text_encoder(tokenizer: CLIPTokenizer, seed: int = 0) -> CLIPTextModel:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TINY_TEXT_WIDTH, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config).eval()


def tiny_components(seed: int = 0, **unet_overrides) -> dict:
    """diffusers' `get_dummy_components` habit: everything a `HiGenPipeline` needs, tiny and seeded."""
    tokenizer = tiny_tokenizer()
    return dict(
        vae=tiny_vae(seed), text_encoder=tiny_text_encoder(tokenizer, seed), tokenizer=tokenizer,
        unet=tiny_unet(seed, **unet_overrides), scheduler=default_scheduler(),
    )


def tiny_pipeline(seed: int = 0, **unet_overrides) -> HiGenPipeline:
    pipe = HiGenPipeline(**tiny_components(seed, **unet_overrides))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_train_config(**fields):
    """A training `TrainConfig` whose every model is the tiny one (4 frames of 16x16 unless `fields` say otherwise)."""
    from .training.config import TrainConfig  # the trainer's config needs yaml; the pipeline's users do not

    models = dict(init_from="tiny", vae="tiny", text_encoder="tiny", tokenizer="tiny", appearance_model="tiny")
    return TrainConfig(**{**models, "num_frames": 4, "height": 16, "width": 16, **fields})


def add_random_lora_(pipe: HiGenPipeline, rank: int = 4, alpha: float | None = None, seed: int = 0,
                     std: float = 0.1) -> dict:
    """Give `pipe`'s UNet a LoRA adapter whose B matrices are random (a new adapter's are zero, which is the base
    model; a trained one's are not). Returns its weights, as `HiGenPipeline.save_lora_weights` takes them."""
    from .lora import lora_config, lora_state_dict_of

    pipe.unet.add_adapter(lora_config(rank, alpha))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in pipe.unet.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * std)
    return lora_state_dict_of(pipe.unet)
