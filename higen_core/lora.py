# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""LoRA for HiGen's UNet: what the trainer adds (`lora_config`), and the pipeline's loader (`HiGenLoraLoaderMixin`).

The adapters are peft's, saved in the file diffusers' LoRA loaders read (`pytorch_lora_weights.safetensors`, keys
`unet.<module>.lora_A.weight` / `lora_B.weight`), so a diffusers user loads one as usual:

    pipe = HiGenPipeline.from_pretrained("path/to/base")
    pipe.load_lora_weights("runs/my-lora/lora", adapter_name="mine")
    pipe.set_adapters(["mine"], adapter_weights=[0.8])   # its scale; 0 is the base model
    pipe.unload_lora_weights()                            # back to the base model

By default the adapters go on every attention projection (the spatial and temporal transformers and the text
resampler) and on the motion and appearance MLPs, so that a fine-tune can change what γm and γa do on its clips. The
prior stem and the convolutions keep their weights: the stem only has to pass the prior on, which it already does.
"""

from __future__ import annotations

import os
from typing import Callable

import torch
from diffusers.loaders.lora_base import LoraBaseMixin, _fetch_state_dict

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
# What lora_state_dict passes on to huggingface_hub when it reads a LoRA from the Hub.
HUB_OPTIONS = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision", "subfolder")
# Module names (or suffixes of them) that get adapters: attention projections everywhere, and the two factor MLPs.
DEFAULT_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "motion_embedding.linear_1", "motion_embedding.linear_2",
                        "appearance_embedding.linear_1", "appearance_embedding.linear_2"]


def lora_config(rank: int, alpha: float | None = None, targets: list[str] | None = None):
    """peft's LoraConfig for HiGen's UNet. `alpha` defaults to `rank` (a scale of 1). The B matrices start at zero,
    so an adapter begins as the base model."""
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=rank if alpha is None else alpha, init_lora_weights=True,
                      target_modules=list(targets or DEFAULT_LORA_TARGETS))


def lora_state_dict_of(unet) -> dict[str, torch.Tensor]:
    """The adapter weights of `unet` (not the base's), keyed as `save_lora_weights` takes them."""
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(unet)


def lora_metadata_of(unet, adapter_name: str = "default") -> dict:
    """The adapter's configuration (rank, alpha, targets), saved beside its weights: without it a loader takes
    alpha to be the rank, and an adapter trained with another alpha comes back at another strength."""
    return unet.peft_config[adapter_name].to_dict()


def _check_fits(unet: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Refuse, in one line, a LoRA made for another network: a module it adapts that this UNet lacks, or whose
    size differs (peft's own error lists every mismatched tensor)."""
    for key, tensor in state_dict.items():
        module_name, _, matrix = key.rpartition(".lora_")
        try:
            module = unet.get_submodule(module_name)
        except AttributeError:
            raise ValueError(f"This LoRA adapts {module_name}, which this model does not have: it was made for "
                             f"another network.") from None
        expected = getattr(module, "in_features", None) if matrix.startswith("A") else \
            getattr(module, "out_features", None)
        found = tensor.shape[1] if matrix.startswith("A") else tensor.shape[0]
        if expected is not None and expected != found:
            raise ValueError(f"This LoRA does not fit this model: {module_name} has {expected} features where the "
                             f"LoRA has {found}. It was made for another base model (or size).")


class HiGenLoraLoaderMixin(LoraBaseMixin):
    """`load_lora_weights`, `save_lora_weights`, `fuse_lora` and `unfuse_lora` for a pipeline whose one LoRA-capable
    component is `unet`; `set_adapters`, `disable_lora`, `enable_lora`, `delete_adapters` and `unload_lora_weights`
    come from diffusers' `LoraBaseMixin`."""

    _lora_loadable_modules = ["unet"]
    unet_name = "unet"

    @classmethod
    def lora_state_dict(cls, pretrained_model_name_or_path_or_dict: str | os.PathLike | dict,
                        weight_name: str | None = None, return_lora_metadata: bool = False, **hub_options):
        """The LoRA state dict of a folder, file, hub id or dict (with its adapter metadata if
        `return_lora_metadata`). `hub_options` are huggingface_hub's: cache_dir, force_download, proxies,
        local_files_only, token, revision, subfolder. Only safetensors files are read: a pickle can run code."""
        unknown = sorted(set(hub_options) - set(HUB_OPTIONS))
        if unknown:
            raise TypeError(f"lora_state_dict() got unexpected options: {', '.join(unknown)}")
        state_dict, metadata = _fetch_state_dict(
            pretrained_model_name_or_path_or_dict=pretrained_model_name_or_path_or_dict, weight_name=weight_name,
            use_safetensors=True, allow_pickle=False, user_agent={"file_type": "attn_procs_weights"},
            **{name: hub_options.get(name, False if name == "force_download" else None) for name in HUB_OPTIONS})
        return (state_dict, metadata) if return_lora_metadata else state_dict

    def load_lora_weights(self, pretrained_model_name_or_path_or_dict, adapter_name: str | None = None,
                          hotswap: bool = False, **kwargs) -> None:
        """Add a LoRA to `self.unet` under `adapter_name` (default: `default_<i>`), active at scale 1."""
        if isinstance(pretrained_model_name_or_path_or_dict, dict):
            pretrained_model_name_or_path_or_dict = dict(pretrained_model_name_or_path_or_dict)
        state_dict, metadata = self.lora_state_dict(pretrained_model_name_or_path_or_dict,
                                                    return_lora_metadata=True, **kwargs)
        if not state_dict or not all("lora" in key for key in state_dict):
            raise ValueError("Not a LoRA checkpoint: every weight's name must contain 'lora' (a HiGen LoRA is "
                             f"DIR/lora/{LORA_WEIGHT_NAME}, written by `python -m higen_core.train --lora-rank N`).")
        unet_keys = [key for key in state_dict if key.startswith(f"{self.unet_name}.")]
        if not unet_keys:
            raise ValueError(f"This LoRA has no weights for the UNet (keys starting with '{self.unet_name}.').")
        _check_fits(self.unet, {key[len(self.unet_name) + 1:]: state_dict[key] for key in unet_keys})
        self.unet.load_lora_adapter(state_dict, prefix=self.unet_name, adapter_name=adapter_name, metadata=metadata,
                                    _pipeline=self, hotswap=hotswap)

    @classmethod
    def save_lora_weights(cls, save_directory: str | os.PathLike, unet_lora_layers: dict[str, torch.Tensor],
                          is_main_process: bool = True, weight_name: str | None = None,
                          save_function: Callable | None = None, safe_serialization: bool = True,
                          unet_lora_adapter_metadata: dict | None = None) -> None:
        """Write `unet_lora_layers` (see `lora_state_dict_of`) to `save_directory/pytorch_lora_weights.safetensors`."""
        if not unet_lora_layers:
            raise ValueError("Give unet_lora_layers: the adapter weights to save.")
        cls._save_lora_weights(save_directory=save_directory, lora_layers={cls.unet_name: unet_lora_layers},
                               lora_metadata={cls.unet_name: unet_lora_adapter_metadata},
                               is_main_process=is_main_process, weight_name=weight_name, save_function=save_function,
                               safe_serialization=safe_serialization)

    def fuse_lora(self, components: list[str] = ("unet",), lora_scale: float = 1.0, safe_fusing: bool = False,
                  adapter_names: list[str] | None = None, **kwargs) -> None:
        """Fold the active adapters into the UNet's weights (faster inference; `unfuse_lora` takes them out)."""
        super().fuse_lora(components=list(components), lora_scale=lora_scale, safe_fusing=safe_fusing,
                          adapter_names=adapter_names, **kwargs)

    def unfuse_lora(self, components: list[str] = ("unet",), **kwargs) -> None:
        super().unfuse_lora(components=list(components), **kwargs)

