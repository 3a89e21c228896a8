# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""One way to load a HiGen pipeline, used by the CLI, the studio and the evaluation suites (the benchmark builds its
released-size models in code; its tiny ones are `load_pipeline("tiny")`'s components).

    pipe = higen_core.load_pipeline("assets/shapes-model")                       # a folder: CPU, float32
    pipe = higen_core.load_pipeline("owner/higen-t2v", device="cuda")            # a hub id: float16 on a GPU
    pipe = higen_core.load_pipeline("higen-t2v", device="cuda", offload="model") # each model on the GPU only to run
    pipe = higen_core.load_pipeline("tiny")                                      # untrained, built in code (tests)

A mistake (a folder that does not exist, a folder of something else, a device this machine lacks) raises
`PipelineLoadError` with one line that says what to do. `apply_lora(pipe, source, scale)` loads a LoRA into a loaded
pipeline the same way, for the CLI and the studio.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from safetensors import SafetensorError

from .lora import LORA_WEIGHT_NAME
from .pipeline_higen import HiGenPipeline

TINY = "tiny"
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
OFFLOAD_MODES = ("none", "model", "sequential")


class PipelineLoadError(ValueError):
    """A model that cannot be loaded as asked; the message is one line that says what to do."""


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`device`, or cuda when torch sees a GPU, else cpu."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise PipelineLoadError(f"{device!r} is not a torch device (cpu, cuda, cuda:1, ...): {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PipelineLoadError(f"device {device}: this machine has no CUDA GPU that torch can use; use cpu.")
    return device


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """`dtype` (a torch dtype or a name such as "float16" or "bf16"), or half precision on a GPU and float32 on the
    CPU, where half-precision convolutions are slow or missing."""
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise PipelineLoadError(f"dtype must be one of {sorted(DTYPES)}; got {dtype!r}.")
    return DTYPES[dtype]


def set_cpu_threads(threads: int | None = None) -> int:
    """Threads of torch's CPU operations: `threads`, or by default one per two cores. The models run here are small
    enough that a second thread per core only adds synchronisation, and on a machine where other work runs, threads
    that spin waiting for a busy core cost several times their gain. Returns the number set."""
    if threads is None:
        threads = max(1, (os.cpu_count() or 2) // 2)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise PipelineLoadError(f"CPU threads must be a positive integer; got {threads!r}.")
    torch.set_num_threads(threads)
    return threads


def is_hub_id(source: str) -> bool:
    """Whether `source`, which is no folder or file here, names a hub model: "owner/name", unless its first part is
    a folder here or it starts like a path (then it was meant as a path that does not exist)."""
    try:
        validate_repo_id(source)
    except HFValidationError:
        return False
    return source.count("/") == 1 and not Path(source).expanduser().parent.is_dir() and \
        not source.startswith((".", "~"))


def check_source(source: str) -> str:
    """The folder or hub id to give from_pretrained, or a PipelineLoadError for a path that is no pipeline folder."""
    path = Path(source).expanduser()
    if path.is_dir():
        index = path / "model_index.json"
        if not index.is_file():
            raise PipelineLoadError(f"{source} is not a pipeline folder (it has no model_index.json); give a folder "
                                    f"written by HiGenPipeline.save_pretrained or python -m higen_core.convert.")
        try:
            class_name = json.loads(index.read_text()).get("_class_name")
        except (OSError, ValueError, AttributeError):
            raise PipelineLoadError(f"{index} is not a valid pipeline index (expected a JSON object).") from None
        if class_name != HiGenPipeline.__name__:
            raise PipelineLoadError(f"{source} holds a {class_name}, not a {HiGenPipeline.__name__}.")
        return str(path)
    if not is_hub_id(source):
        raise PipelineLoadError(f"no such folder: {source}. Give a pipeline folder or a hub id (owner/name).")
    return source


def load_pipeline(source: str, *, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                  offload: str | None = None, progress_bar: bool = False) -> HiGenPipeline:
    """A `HiGenPipeline` from a folder, a hub id or "tiny", in `dtype` (default: float16 on a GPU, float32 on the
    CPU) on `device` (default: cuda if available). `offload`: "model" keeps each model on the CPU until it runs,
    "sequential" each layer (slowest, least memory); both need a GPU."""
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    offload = offload or "none"
    if offload not in OFFLOAD_MODES:
        raise PipelineLoadError(f"offload must be one of {OFFLOAD_MODES}; got {offload!r}.")
    if offload != "none" and torch_device.type != "cuda":
        raise PipelineLoadError(f"offload {offload!r} moves models between the CPU and a GPU: it needs a cuda device.")

    if source == TINY:
        from .testing import tiny_pipeline

        pipe = tiny_pipeline()
        if torch_dtype != torch.float32:  # built in float32; a cast to the same dtype makes diffusers log a warning
            pipe.to(dtype=torch_dtype)
    else:
        name = check_source(str(source))
        try:
            # `dtype`: diffusers since 0.40 calls the older `torch_dtype` deprecated (pyproject.toml requires 0.42).
            pipe = HiGenPipeline.from_pretrained(name, dtype=torch_dtype)
        except Exception as error:  # a half-written folder, no network, a gated repo: one line says which
            reason = " ".join(str(error).split())[:500] or type(error).__name__
            raise PipelineLoadError(f"cannot load a HiGen pipeline from {source}: {reason}") from error
    pipe.set_progress_bar_config(disable=not progress_bar)
    if offload == "model":
        pipe.enable_model_cpu_offload(device=torch_device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=torch_device)
    else:
        pipe.to(torch_device)
    return pipe


def apply_lora(pipe, source: str | os.PathLike, scale: float = 1.0, adapter_name: str = "lora") -> None:
    """Load the LoRA at `source` (a folder holding `pytorch_lora_weights.safetensors`, such a file, or a hub id)
    into `pipe` at `scale`, replacing one loaded before under `adapter_name`. Raises ValueError saying what is wrong
    with `source`."""
    path = Path(source).expanduser()
    kwargs = {}
    if path.is_file():
        path, kwargs = path.parent, {"weight_name": path.name}
    elif path.is_dir() and not (path / LORA_WEIGHT_NAME).is_file():
        raise ValueError(f"{source} holds no {LORA_WEIGHT_NAME}: give the folder a LoRA run wrote (DIR/lora) or "
                         f"the file itself.")
    elif not path.exists() and not is_hub_id(str(source)):
        raise ValueError(f"no such LoRA folder or file: {source}.")
    if adapter_name in pipe.get_list_adapters().get("unet", []):
        pipe.delete_adapters(adapter_name)
    try:
        pipe.load_lora_weights(str(path) if path.exists() else str(source), adapter_name=adapter_name, **kwargs)
    except (OSError, KeyError, RuntimeError, SafetensorError) as error:  # unreadable, or adapters that do not fit
        raise ValueError(f"cannot load the LoRA {source} into this model: {error}") from None
    pipe.set_adapters([adapter_name], adapter_weights=[scale])
