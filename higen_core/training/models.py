# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""The models a training run starts from: the trainable HiGen UNet and the frozen VAE, text encoder and appearance
model, each from a folder, a hub id or "tiny" (seeded, built in code, for tests and the offline demo config)."""

from __future__ import annotations

import os

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel, UNet3DConditionModel
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer, CLIPTextModel, Dinov2Config, Dinov2Model

from ..pipeline_higen import HiGenPipeline
from ..testing import tiny_text_encoder, tiny_tokenizer, tiny_unet, tiny_vae
from ..unet_higen import HiGenUNet3DModel
from .config import ConfigError, TrainConfig

# ImageNet statistics: what DINO/DINOv2 were trained with, used when a model comes without an image processor.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def tiny_appearance_model(seed: int = 0) -> Dinov2Model:
    """A seeded two-layer DINOv2 on 16x16 frames (4x4 patches): random features, real code path."""
    torch.manual_seed(seed)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, image_size=16,
                          patch_size=4)
    return Dinov2Model(config).eval()


class AppearanceEncoder(torch.nn.Module):
    """Frozen self-supervised image model -> one feature vector per frame (its CLS/pooled output). The appearance
    matrix is the cosine similarity of these features between frames (Eq. 3 of the paper).

    Frames are resized and normalised here, on the device, rather than by the image processor on PIL images: the
    processor only tells the resolution and the normalisation the model expects."""

    def __init__(self, model: torch.nn.Module, size: tuple[int, int], mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.size = tuple(size)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def load(cls, source: str, seed: int = 0) -> AppearanceEncoder:
        if source == "tiny":
            model = tiny_appearance_model(seed)
            return cls(model, (model.config.image_size,) * 2)
        model = AutoModel.from_pretrained(source)
        processor = AutoImageProcessor.from_pretrained(source)
        return cls(model, _processor_size(processor), processor.image_mean, processor.image_std)

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor, chunk_size: int = 64) -> torch.Tensor:
        """(N, 3, H, W) frames in [-1, 1] -> (N, D) features."""
        features = []
        for chunk in pixels.split(chunk_size):
            x = F.interpolate(chunk.float(), size=self.size, mode="bicubic", align_corners=False, antialias=True)
            x = ((x.clamp(-1, 1) + 1) / 2 - self.mean) / self.std
            out = self.model(pixel_values=x.to(self.mean.device, next(self.model.parameters()).dtype))
            pooled = getattr(out, "pooler_output", None)
            features.append((pooled if pooled is not None else out.last_hidden_state[:, 0]).float().flatten(1))
        return torch.cat(features)


def _processor_size(processor) -> tuple[int, int]:
    """The (height, width) an image processor feeds its model: the centre crop if it crops, else its resize."""
    size = processor.crop_size if getattr(processor, "do_center_crop", False) else processor.size
    if "height" in size:
        return size["height"], size["width"]
    return (size["shortest_edge"],) * 2


def _pipeline_index(source: str) -> dict | None:
    """model_index.json of a pipeline folder/hub id, or None for a single model's folder."""
    try:
        return DiffusionPipeline.load_config(source)
    except (OSError, ValueError):
        return None


@dataclass
class Components:
    unet: HiGenUNet3DModel
    vae: AutoencoderKL
    tokenizer: object
    text_encoder: CLIPTextModel
    appearance: AppearanceEncoder
    # The generation settings init_from's HiGen pipeline recommends (its model_index.json's `settings`), if any:
    # the samples and the final pipeline use them, so a fine-tuned model keeps what its base recommends.
    settings: dict | None = None


def place_frozen_models(components: Components, frozen_dtype: str, device: torch.device,
                        mixed_precision: str) -> None:
    """Move the frozen models to `device` in the `frozen_dtype` field's dtype: 'auto' is float32 on a CPU and half
    precision on a GPU (bfloat16 under bf16 mixed precision, else float16), where they only run forward."""
    named = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    dtype = named.get(frozen_dtype, torch.float32 if device.type == "cpu" else
                      torch.bfloat16 if mixed_precision == "bf16" else torch.float16)
    for frozen in (components.vae, components.text_encoder, components.appearance):
        frozen.to(device)
        if dtype != torch.float32:
            frozen.to(dtype=dtype)


def load_components(config: TrainConfig) -> Components:
    """The UNet from `init_from` (sized for the run: num_frames and latent sample size), the frozen models from their
    fields, each defaulting to the matching part of `init_from`'s pipeline."""
    source, seed = config.init_from, config.seed
    defaults: dict[str, object] = {}
    settings = None
    if source == "tiny":
        unet = tiny_unet(seed)
    elif source.endswith(".json") and os.path.isfile(source):
        # A HiGenUNet3DModel configuration: a new model, trained from scratch (e.g. the shapes world's).
        torch.manual_seed(seed)
        unet = HiGenUNet3DModel.from_config(HiGenUNet3DModel.load_config(source))
    else:
        index = _pipeline_index(source)
        if index is not None and index.get("_class_name") == "HiGenPipeline":
            # Fine-tuning a HiGen model: its own frozen models are the defaults.
            pipe = HiGenPipeline.from_pretrained(source)
            unet, settings = pipe.unet, pipe.config.settings
            defaults = {"vae": pipe.vae, "text_encoder": pipe.text_encoder, "tokenizer": pipe.tokenizer}
        else:
            subfolder = "unet" if index is not None else None
            class_name = HiGenUNet3DModel.load_config(source, subfolder=subfolder).get("_class_name")
            if class_name == "HiGenUNet3DModel":
                unet = HiGenUNet3DModel.from_pretrained(source, subfolder=subfolder)
            elif class_name == "UNet3DConditionModel":
                unet = HiGenUNet3DModel.from_unet3d(UNet3DConditionModel.from_pretrained(source, subfolder=subfolder))
            elif class_name == "UNet2DConditionModel":
                unet = HiGenUNet3DModel.from_unet2d(UNet2DConditionModel.from_pretrained(source, subfolder=subfolder))
            else:
                raise ConfigError("init_from", f"{source} holds a {class_name}; expected a HiGen pipeline, a "
                                  f"UNet3DConditionModel or a UNet2DConditionModel (pipeline or unet folder).")
            if index is not None:
                defaults = {name: (source, name) for name in ("vae", "text_encoder", "tokenizer")}

    def pick(name: str, value: str | None, tiny, loader):
        if value == "tiny":
            return tiny()
        if value is None:
            if name not in defaults:
                raise ConfigError(name, f"not given, and init_from ({source}) is not a pipeline folder to take it "
                                  f"from: give a folder, a hub id or 'tiny'.")
            default = defaults[name]
            return loader(*default) if isinstance(default, tuple) else default
        # A pipeline folder given for one component: take that component's subfolder.
        return loader(value, name if _pipeline_index(value) is not None else None)

    vae = pick("vae", config.vae, lambda: tiny_vae(seed),
               lambda path, sub: AutoencoderKL.from_pretrained(path, subfolder=sub))
    # Without its own field, the tokenizer is the one next to the text encoder.
    tokenizer = pick("tokenizer", config.tokenizer or config.text_encoder, tiny_tokenizer,
                     # transformers spells "no subfolder" as "", not None.
                     lambda path, sub: AutoTokenizer.from_pretrained(path, subfolder=sub or ""))
    text_encoder = pick("text_encoder", config.text_encoder, lambda: tiny_text_encoder(tokenizer, seed),
                        lambda path, sub: CLIPTextModel.from_pretrained(path, subfolder=sub or ""))
    appearance = AppearanceEncoder.load(config.appearance_model, seed)

    # The run's frame count and size become the model's defaults, so the pipeline it is saved into samples like
    # it was trained.
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    levels = 2 ** (len(unet.config.block_out_channels) - 1)
    for name in ("height", "width"):
        if getattr(config, name) % (factor * levels):
            raise ConfigError(name, f"must be a multiple of {factor * levels} (VAE factor {factor} x {levels} for "
                              f"the UNet's levels); got {getattr(config, name)}.")
    if config.num_frames > unet.config.appearance_width:
        raise ConfigError("num_frames", f"at most {unet.config.appearance_width} (the model's appearance width); "
                          f"got {config.num_frames}.")
    unet.register_to_config(num_frames=config.num_frames,
                            sample_size=(config.height // factor, config.width // factor))
    if config.motion_factor_measure is not None:
        # The model records how its γm was measured, so that a later fine-tune, or a reader, keeps its meaning.
        unet.register_to_config(motion_factor_measure=config.motion_factor_measure)
    return Components(unet.float().train(), vae.eval().requires_grad_(False), tokenizer,
                      text_encoder.eval().requires_grad_(False), appearance, settings)
