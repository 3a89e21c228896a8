# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""What a run writes besides its checkpoints: sample videos, the final pipeline folder (or a LoRA run's adapters),
the data skips and the per-step log."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from diffusers.training_utils import EMAModel

from ..lora import lora_metadata_of, lora_state_dict_of
from ..pipeline_higen import HiGenPipeline, default_scheduler
from ..unet_higen import HiGenUNet3DModel
from ..video_io import export_gif, export_mp4
from .config import TrainConfig
from .data import SkipStats
from .models import Components

logger = get_logger("higen_core.train")


def write_samples(accelerator: Accelerator, unet, components: Components, ema: EMAModel | None,
                  config: TrainConfig, step: int) -> None:
    """MP4 and GIF of each sample prompt (main process), with the EMA weights when there are some. A motion factor
    left at None is the model's recommended one (`pipe.settings`)."""
    model = accelerator.unwrap_model(unet)
    if ema is not None:
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
    model.eval()
    pipe = HiGenPipeline(components.vae, components.text_encoder, components.tokenizer, unet=model,
                         scheduler=default_scheduler(), settings=components.settings)
    pipe.set_progress_bar_config(disable=True)
    motion_factor = pipe.settings.motion_factor if config.sample_motion_factor is None else config.sample_motion_factor
    generator = torch.Generator(accelerator.device).manual_seed(config.seed)  # not the training RNG
    with accelerator.autocast():
        videos = pipe(config.sample_prompts, num_inference_steps=config.sample_inference_steps,
                      guidance_scale=config.sample_guidance_scale, motion_factor=motion_factor,
                      generator=generator).frames
    folder = Path(config.output_dir) / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    for i, (prompt, frames) in enumerate(zip(config.sample_prompts, videos)):
        settings = {"step": step, "prompt": prompt, "motion_factor": motion_factor,
                    "num_inference_steps": config.sample_inference_steps,
                    "guidance_scale": config.sample_guidance_scale, "seed": config.seed}
        export_mp4(frames, folder / f"step-{step:06d}-{i}.mp4", fps=config.fps, metadata=settings)
        export_gif(frames, folder / f"step-{step:06d}-{i}.gif", fps=config.fps)
    model.train()
    if ema is not None:
        ema.restore(model.parameters())


def save_final(accelerator: Accelerator, unet, components: Components, ema: EMAModel | None,
               output_dir: Path) -> Path:
    """DIR/final: a HiGenPipeline folder (EMA weights if EMA, float32) with the settings init_from's pipeline
    recommends, written beside and then moved in."""
    state = accelerator.get_state_dict(unet)  # every process: gathers shards under FSDP / ZeRO-3
    final = output_dir / "final"
    if accelerator.is_main_process:
        model = HiGenUNet3DModel.from_config(accelerator.unwrap_model(unet).config)
        model.load_state_dict(state)
        if ema is not None:
            ema.copy_to(model.parameters())
        pipe = HiGenPipeline(components.vae.float(), components.text_encoder.float(), components.tokenizer,
                             unet=model.float(), scheduler=default_scheduler(), settings=components.settings)
        tmp = output_dir / "final.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        pipe.save_pretrained(tmp)
        if final.exists():
            shutil.rmtree(final)
        tmp.replace(final)
    accelerator.wait_for_everyone()
    return final


def save_lora(accelerator: Accelerator, unet, output_dir: Path) -> Path:
    """DIR/lora: the adapters alone, in diffusers' LoRA format, written beside and then moved in."""
    model = accelerator.unwrap_model(unet)
    folder = output_dir / "lora"
    if accelerator.is_main_process:
        tmp = output_dir / "lora.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        HiGenPipeline.save_lora_weights(tmp, unet_lora_layers=lora_state_dict_of(model),
                                        unet_lora_adapter_metadata=lora_metadata_of(model))
        if folder.exists():
            shutil.rmtree(folder)
        tmp.replace(folder)
    accelerator.wait_for_everyone()
    return folder


def report_skips(accelerator: Accelerator, stats: SkipStats, output_dir: Path) -> None:
    """Log the data skips of this run and write them to logs/data_skips.json for the studio."""
    if stats.total():
        logger.warning(f"Data: {stats.summary()}", main_process_only=True)
    if accelerator.is_main_process:
        (output_dir / "logs" / "data_skips.json").write_text(json.dumps(
            {"total": stats.total(), "counts": stats.counts, "examples": stats.examples}, indent=2))


def append_log(log_path: Path, record: dict) -> None:
    """One JSON line per optimizer step (the studio's training tab reads them as they come)."""
    with open(log_path, "a") as log:
        log.write(json.dumps(record) + "\n")


def truncate_log(log_path: Path, step: int) -> None:
    """Keep the log lines of steps up to `step`, the one a run (re)starts from: the later ones are about to be
    trained again. A line cut short by a run killed while writing it is dropped too. The log is replaced in one
    move, so a run killed now keeps the old one."""
    if not log_path.is_file():
        return
    kept = []
    for line in log_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
            kept.append(line + "\n")
    tmp = log_path.with_name(log_path.name + ".tmp")
    tmp.write_text("".join(kept))
    tmp.replace(log_path)
