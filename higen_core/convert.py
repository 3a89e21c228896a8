# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""Convert the released HiGen checkpoint (ali-vilab/VGen's `UNetSD_HiGen`) into a `HiGenUNet3DModel` and a complete
pipeline folder.

    python -m higen_core.convert --vgen-checkpoint cvpr2024.t2v.e003.non_ema_0725000.pth \
        --base stabilityai/stable-diffusion-2-1-base --out higen-t2v

The released model's text encoder (OpenCLIP-H, penultimate layer) and VAE are Stable Diffusion 2.1's, so `--base`
names any diffusers folder or hub id of SD 2.x; its `text_encoder`, `tokenizer` and `vae` are copied in.

Conversion is strict: every official key is used exactly once and every parameter of the new model is filled, or it
fails naming the keys that are missing or left over.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

import torch

from .unet_higen import HiGenUNet3DModel

# The released model's `UNetSD_HiGen` arguments (VGen's configs/higen_train.yaml and the class defaults).
RELEASED_VGEN_CONFIG = dict(
    in_dim=4, dim=320, y_dim=1024, context_dim=1024, out_dim=4, dim_mult=(1, 2, 4, 4), num_heads=8, head_dim=64,
    num_res_blocks=2, attn_scales=(1.0, 0.5, 0.25), dropout=0.1, temporal_attention=True,
    context_embedding_depth=2, num_tokens=16, use_fps_condition=False,
)
# Arguments of `UNetSD_HiGen` that do not change the released network's parameters or math at inference.
IGNORED_VGEN_ARGS = {
    "config", "use_checkpoint", "temporal_attn_times", "use_sim_mask", "use_image_dataset", "training", "inpainting",
    "p_all_zero", "p_all_keep", "zero_y", "adapter_transformer_layers", "hist_dim", "dim_condition", "upper_len",
    "concat_dim", "default_fps", "use_scale_shift_norm", "type",
}
# The official network builds its decoder's cross-attention for 1024-wide text states whatever `context_dim` says.
OFFICIAL_DECODER_CONTEXT_DIM = 1024

# Renames inside one official module, by module kind (official name -> diffusers name).
RESNET_RENAMES = {
    "in_layers.0.": "norm1.", "in_layers.2.": "conv1.", "emb_layers.1.": "time_emb_proj.",
    "out_layers.0.": "norm2.", "out_layers.3.": "conv2.", "skip_connection.": "conv_shortcut.",
}
MLP_RENAMES = {"0.": "linear_1.", "2.": "linear_2."}
RESAMPLER_RENAMES = {
    "input_mapping.": "proj_in.", "output_mapping.": "proj_out.", "tokens": "query_tokens",
    "context_transformer.": "blocks.",
}


def unet_config_from_vgen(**vgen_kwargs) -> dict:
    """`UNetSD_HiGen` constructor arguments -> `HiGenUNet3DModel` config (released values for anything not given)."""
    unknown = set(vgen_kwargs) - set(RELEASED_VGEN_CONFIG) - IGNORED_VGEN_ARGS
    if unknown:
        raise TypeError(f"Unknown UNetSD_HiGen arguments: {sorted(unknown)}.")
    cfg = {**RELEASED_VGEN_CONFIG, **{k: v for k, v in vgen_kwargs.items() if k in RELEASED_VGEN_CONFIG}}
    if cfg["use_fps_condition"]:
        raise NotImplementedError("use_fps_condition=True: no released HiGen model uses an fps embedding.")
    if cfg["context_dim"] != OFFICIAL_DECODER_CONTEXT_DIM:
        raise ValueError(
            f"context_dim={cfg['context_dim']}: the official network's decoder always cross-attends to "
            f"{OFFICIAL_DECODER_CONTEXT_DIM}-wide states, so it only runs with context_dim=1024."
        )
    dim = cfg["dim"]
    scales = [float(s) for s in cfg["attn_scales"]]
    return dict(
        in_channels=cfg["in_dim"],
        out_channels=cfg["out_dim"],
        block_out_channels=tuple(dim * m for m in cfg["dim_mult"]),
        layers_per_block=cfg["num_res_blocks"],
        attention_levels=tuple(any(abs(2.0**-level - s) < 1e-9 for s in scales) for level in range(len(cfg["dim_mult"]))),
        attention_head_dim=cfg["head_dim"],
        stem_attention_heads=cfg["num_heads"] or dim // 32,
        temporal_attention=bool(cfg["temporal_attention"]),
        text_embed_dim=cfg["y_dim"],
        cross_attention_dim=cfg["context_dim"],
        use_text_resampler=True,
        resampler_tokens=cfg["num_tokens"],
        resampler_depth=cfg["context_embedding_depth"],
        dropout=cfg["dropout"],
    )


def _module_renames(config) -> list[tuple[str, str, dict]]:
    """(official prefix, our prefix, inner renames) for every module, walking the official layout."""
    table = [
        ("time_embed.", "time_embedding.", MLP_RENAMES),
        ("msim_embedding.", "motion_embedding.", MLP_RENAMES),
        ("asim_embedding.", "appearance_embedding.", MLP_RENAMES),
        ("context_embedding.", "text_resampler.", RESAMPLER_RENAMES),
        ("img_embedding.", "prior_conv_in.", {}),
        ("input_blocks.0.0.", "conv_in.", {}),
        ("input_blocks.0.1.", "transformer_in.", {}),
        ("out.0.", "conv_norm_out.", {}),
        ("out.2.", "conv_out.", {}),
    ]
    temporal = config["temporal_attention"]
    levels = len(config["block_out_channels"])
    per_block = config["layers_per_block"]

    def layer(official, ours, j, has_attention):
        # A ResNet carries its temporal convolution inside it in the official layout.
        table.append((f"{official}.0.temopral_conv.", f"{ours}.temp_convs.{j}.", {}))
        table.append((f"{official}.0.", f"{ours}.resnets.{j}.", RESNET_RENAMES))
        if has_attention:
            table.append((f"{official}.1.", f"{ours}.attentions.{j}.", {}))
            if temporal:
                table.append((f"{official}.2.", f"{ours}.temp_attentions.{j}.", {}))

    index = 1
    for i in range(levels):
        for j in range(per_block):
            layer(f"input_blocks.{index}", f"down_blocks.{i}", j, config["attention_levels"][i])
            index += 1
        if i != levels - 1:
            table.append((f"input_blocks.{index}.op.", f"down_blocks.{i}.downsamplers.0.conv.", {}))
            index += 1

    table.append(("middle_block.0.temopral_conv.", "mid_block.temp_convs.0.", {}))
    table.append(("middle_block.0.", "mid_block.resnets.0.", RESNET_RENAMES))
    table.append(("middle_block.1.", "mid_block.attentions.0.", {}))
    last = 2
    if temporal:
        table.append(("middle_block.2.", "mid_block.temp_attentions.0.", {}))
        last = 3
    table.append((f"middle_block.{last}.temopral_conv.", "mid_block.temp_convs.1.", {}))
    table.append((f"middle_block.{last}.", "mid_block.resnets.1.", RESNET_RENAMES))

    index = 0
    for i, level in enumerate(reversed(range(levels))):
        has_attention = config["attention_levels"][level]
        for j in range(per_block + 1):
            layer(f"output_blocks.{index}", f"up_blocks.{i}", j, has_attention)
            if level > 0 and j == per_block:
                position = 1 + (2 if has_attention and temporal else 1 if has_attention else 0)
                table.append((f"output_blocks.{index}.{position}.conv.", f"up_blocks.{i}.upsamplers.0.conv.", {}))
            index += 1
    # Longest prefix first, so that "x.0.temopral_conv." wins over "x.0.".
    return sorted(table, key=lambda row: -len(row[0]))


def convert_vgen_state_dict(state_dict: Mapping[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """Rename the official keys to ours. Every key must be claimed by exactly one module of the layout."""
    table = _module_renames(config)
    converted, unclaimed = {}, []
    for key, value in state_dict.items():
        for official, ours, inner in table:
            if key.startswith(official):
                rest = key[len(official):]
                for old, new in inner.items():
                    if rest.startswith(old):
                        rest = new + rest[len(old):]
                        break
                new_key = ours + rest
                # Special key: the official temporal attention projects with 1x1 Conv1d, ours with Linear.
                if (".proj_in.weight" in new_key or ".proj_out.weight" in new_key) and value.ndim == 3:
                    value = value.squeeze(-1)
                converted[new_key] = value
                break
        else:
            unclaimed.append(key)
    if unclaimed:
        raise ValueError(
            f"{len(unclaimed)} keys of the checkpoint belong to no module of this configuration (left over): "
            f"{unclaimed[:20]}{' ...' if len(unclaimed) > 20 else ''}. Check the UNetSD_HiGen arguments you passed."
        )
    return converted


def _read_checkpoint(checkpoint) -> dict[str, torch.Tensor]:
    if isinstance(checkpoint, Mapping):
        state_dict = checkpoint
    else:
        path = os.fspath(checkpoint)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"VGen checkpoint not found: {path}")
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state_dict = load_file(path)
        else:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    # Training checkpoints may carry a step counter beside the weights.
    return {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor) and k != "step"}


def load_vgen_unet(checkpoint, **vgen_unet_kwargs) -> HiGenUNet3DModel:
    """Build a `HiGenUNet3DModel` from an official HiGen checkpoint.

    Args:
        checkpoint: a `.pth` (with or without a `state_dict` wrapper) or `.safetensors` path, or a state dict in the
            official key layout.
        **vgen_unet_kwargs: the official `UNetSD_HiGen` constructor's arguments (`dim`, `dim_mult`, `y_dim`,
            `context_dim`, `num_tokens`, `context_embedding_depth`, ...); the released model's values by default.
    """
    config = unet_config_from_vgen(**vgen_unet_kwargs)
    converted = convert_vgen_state_dict(_read_checkpoint(checkpoint), config)
    with torch.device("meta"):
        unet = HiGenUNet3DModel(**config)
    expected = set(unet.state_dict())
    missing, extra = sorted(expected - set(converted)), sorted(set(converted) - expected)
    if missing or extra:
        raise ValueError(
            f"The checkpoint does not fill this configuration: {len(missing)} parameters missing "
            f"{missing[:20]}, {len(extra)} left over {extra[:20]}. Check the UNetSD_HiGen arguments you passed."
        )
    for name, value in converted.items():
        wanted = unet.state_dict()[name].shape
        if value.shape != wanted:
            raise ValueError(f"{name}: checkpoint has shape {tuple(value.shape)}, the model expects {tuple(wanted)}.")
    unet.load_state_dict({k: v.float() for k, v in converted.items()}, strict=True, assign=True)
    return unet.eval()


def convert_to_pipeline(vgen_checkpoint, base: str, out: str, **vgen_unet_kwargs):
    """Write a complete pipeline folder: the converted UNet, HiGen's scheduler, the base's text encoder, tokenizer
    and VAE, and the released model's recommended settings (γm 500 in 300-600, γa 1, guidance 12, 50 steps)."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTokenizer

    from .pipeline_higen import HiGenPipeline, default_scheduler
    from .settings import released_settings

    unet = load_vgen_unet(vgen_checkpoint, **vgen_unet_kwargs)
    pipe = HiGenPipeline(
        vae=AutoencoderKL.from_pretrained(base, subfolder="vae"),
        text_encoder=CLIPTextModel.from_pretrained(base, subfolder="text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(base, subfolder="tokenizer"),
        unet=unet,
        scheduler=default_scheduler(),
        settings=released_settings(),
    )
    pipe.save_pretrained(out)
    return pipe


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m higen_core.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vgen-checkpoint", required=True, help="the released .pth (or a .safetensors state dict)")
    parser.add_argument("--base", required=True,
                        help="diffusers folder or hub id of Stable Diffusion 2.x (text encoder, tokenizer, VAE)")
    parser.add_argument("--out", required=True, help="folder to write the pipeline to")
    args = parser.parse_args(argv)
    convert_to_pipeline(args.vgen_checkpoint, args.base, args.out)
    print(f"Wrote a HiGen pipeline to {args.out}. Load it with HiGenPipeline.from_pretrained({args.out!r}).")


if __name__ == "__main__":
    main()
