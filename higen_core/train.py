# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""HiGen image-video joint training (Qing et al., CVPR 2024, Sections 3.3-3.4 and 4.1).

    python -m higen_core.train --config higen_core/configs/train-tiny.yaml --output-dir runs/tiny   # ~1 min, CPU
    accelerate launch -m higen_core.train --config run.yaml           # several GPUs; FSDP/DeepSpeed: accelerate config
    python -m higen_core.train --config run.yaml --resume latest      # the same command continues a stopped run
    python -m higen_core.train --config run.yaml --check-data         # report unusable files, train nothing
    python -m higen_core.train --help                                 # every field, with its default

One UNet learns both of HiGen's steps:
* image batches train spatial reasoning: one frame, no prior, motion 0, an appearance row of ones (as at
  inference), and only the text-to-image model's ("spatial") parameters change;
* video batches train temporal reasoning: every parameter, with the middle frame's latent as the spatial prior,
  motion factors measured on the clip's latents and the appearance matrix of a frozen DINOv2's frame features.
The loss is v-prediction MSE on the official schedule, with offset noise and caption dropout.

OUTPUT_DIR gets checkpoints/step-XXXXXX (atomic, the newest K kept), logs/train_log.jsonl (one JSON line per step,
read by the studio's training tab), samples/ and final/, a HiGenPipeline folder. SIGTERM or Ctrl-C saves a
checkpoint at the next step boundary and exits with code 0.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator, PartialState
from accelerate.logging import get_logger
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader, Dataset, IterableDataset
from tqdm.auto import tqdm

from .pipeline_higen import HiGenPipeline, default_scheduler
from .shapes.world import write_dataset
from .video_io import export_gif, export_mp4
from .training.checkpoint import read_state, resolve_resume, save_checkpoint
from .training.config import ConfigError, TrainConfig, config_to_json, parse_args
from .training.data import ImageTextDataset, SkipStats, TarShardDataset, VideoClipDataset, check_data, collate_skipping
from .training.latents import (build_latent_cache, collate_cached, encode_pixels, encode_text, higen_conditions,
                               sample_latents)
from .training.models import Components, load_components
from .unet_higen import HiGenUNet3DModel

logger = get_logger("higen_core.train")  # not __main__ under `python -m`
KINDS = ("video", "image")


class TrainingError(RuntimeError):
    """A run that cannot go on (e.g. a diverged loss); main() prints it and exits with code 1."""


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


def scale_gradients_by_kind(unet: HiGenUNet3DModel) -> dict[str, float]:
    """Multiply each parameter's gradient, as it is computed, by factors[its kind]; returns the factors to set.

    The hooks run before DDP averages the gradients across processes, so a process training on images adds nothing
    to the temporal and HiGen parameters while the video processes train them, and the 0.2 on the spatial
    parameters applies to every process's contribution alike. (AdamW divides a constant factor out again: only a
    factor of 0, which freezes the parameters, and the share of the clipped norm change the steps it takes.)"""
    factors = {"spatial": 1.0, "temporal": 1.0, "higen": 1.0}
    for name, param in unet.named_parameters():
        kind = unet.parameter_kind(name)
        param.register_hook(lambda grad, kind=kind: grad * factors[kind])
    return factors


class StopSignal:
    """SIGTERM/SIGINT only set a flag: the loop reads it at the next step boundary, saves and exits cleanly (a
    half-done step is never saved). A second Ctrl-C stops at once."""

    def __init__(self):
        self.name: str | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.name = signal.Signals(signum).name

    def __enter__(self) -> StopSignal:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# ----------------------------------------------------------------------------------------------------------------
# Data


def resolve_data(config: TrainConfig) -> dict[str, dict[str, list[str]]]:
    """{kind: {"manifests": [...], "shards": [...]}}. A folder stands for its videos.jsonl / images.jsonl (the
    shapes world's layout) when it has one. Writes the shapes dataset first if the config asks for it."""
    data = {kind: {"manifests": list(getattr(config, f"{kind}_data")),
                   "shards": list(getattr(config, f"{kind}_shards"))} for kind in KINDS}
    generate = config.generate_shapes_dataset
    if generate and not any(part for kind in KINDS for part in data[kind].values()):
        folder = Path(config.output_dir) / "shapes_data"
        params = {"videos": generate.get("videos", 0), "images": generate.get("images", 0), "num_frames":
                  config.num_frames, "fps": config.fps, "size": generate.get("size", 64),
                  "seed": generate.get("seed", config.seed)}
        with PartialState().main_process_first():  # the main process writes it, the others then find it
            if not (folder / "params.json").is_file() or json.loads((folder / "params.json").read_text()) != params:
                # Written aside and moved in whole (its manifests hold relative paths): a killed run leaves no
                # half-written dataset behind.
                tmp = folder.with_name("shapes_data.tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                write_dataset(tmp, params["videos"], params["images"], num_frames=params["num_frames"],
                              fps=params["fps"], size=params["size"], seed=params["seed"])
                (tmp / "params.json").write_text(json.dumps(params))
                shutil.rmtree(folder, ignore_errors=True)
                tmp.replace(folder)
        for kind in KINDS:
            if params[f"{kind}s"]:
                data[kind]["manifests"] = [str(folder)]
    for kind in KINDS:
        data[kind]["manifests"] = [str(Path(p) / f"{kind}s.jsonl") if (Path(p) / f"{kind}s.jsonl").is_file() else p
                                   for p in data[kind]["manifests"]]
    return data


def build_dataset(kind: str, sources: dict[str, list[str]], config: TrainConfig, stats: SkipStats,
                  share: tuple[int, int] | None = None) -> Dataset:
    """`share`: (index, count) of this process among those reading this kind's shards (default: all processes)."""
    frames, size = config.num_frames, (config.height, config.width)
    if sources["shards"]:
        rank, world_size = share if share is not None else (None, None)
        return TarShardDataset(sources["shards"], kind, frames, config.fps, *size, stats=stats, seed=config.seed,
                               rank=rank, world_size=world_size)
    if kind == "video":
        return VideoClipDataset(sources["manifests"], frames, config.fps, *size, stats=stats, seed=config.seed)
    return ImageTextDataset(sources["manifests"], *size, stats=stats)


class BatchStream:
    """Endless batches of one dataset for this process. The order of epoch e is fixed by (seed, e), so a position
    (epoch, batches taken) says exactly where the stream is, and a stream built at a position goes on from there:
    that is how a resumed run sees the data an uninterrupted one would."""

    def __init__(self, dataset: Dataset, batch_size: int, collate_fn, num_workers: int, seed: int,
                 shard: tuple[int, int], position: tuple[int, int] = (0, 0)):
        self.dataset, self.batch_size, self.collate_fn, self.num_workers = dataset, batch_size, collate_fn, num_workers
        self.seed, self.shard = seed, shard
        self.epoch, self.batches = position
        self.stats = getattr(dataset, "stats", SkipStats())
        self._iterator = self._start()

    @property
    def position(self) -> tuple[int, int]:
        return self.epoch, self.batches

    def _start(self):
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        rank, world = self.shard
        indices = None
        if not isinstance(self.dataset, IterableDataset):
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.dataset))[rank::world]
            indices = order[self.batches * self.batch_size:].tolist()
        # A private generator: DataLoader otherwise draws its workers' base seed from the global RNG, which would
        # make the training noise depend on when an epoch starts.
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        iterator = iter(DataLoader(self.dataset, batch_size=self.batch_size, sampler=indices,
                                   collate_fn=self.collate_fn, num_workers=self.num_workers, generator=generator))
        if indices is None:  # tar shards cannot seek: read up to the position
            for _ in range(self.batches):
                next(iterator, None)
        return iterator

    def next(self) -> dict:
        """The next batch with at least one usable sample (all-skipped batches count as taken)."""
        epoch_ends = 0
        while True:
            batch = next(self._iterator, StopIteration)
            if batch is StopIteration:
                epoch_ends += 1
                if epoch_ends > 1:  # a whole epoch went by without a usable sample
                    raise TrainingError(f"An epoch of {type(self.dataset).__name__} gave no usable sample: "
                                        f"{self.stats.summary()}")
                self.epoch, self.batches = self.epoch + 1, 0
                self._iterator = self._start()
                continue
            self.batches += 1
            if batch is not None:
                self.stats.merge(batch.pop("skipped", SkipStats()))
                return batch


# ----------------------------------------------------------------------------------------------------------------
# The objective


def diffusion_loss(unet, latents: torch.Tensor, conditions: dict, text_states: torch.Tensor, noise_scheduler,
                   offset_noise: float, generator: torch.Generator | None = None, high_noise_fraction: float = 0.0,
                   high_noise_start: int = 850) -> torch.Tensor:
    """v-prediction MSE (float32) at uniformly drawn timesteps of the official schedule (zero terminal SNR), a
    share `high_noise_fraction` of them drawn from `high_noise_start` up instead. The noise gets offset noise per
    sample, channel and frame, as the pipeline's starting noise does."""
    batch, channels, frames = latents.shape[:3]
    device = latents.device
    noise = torch.randn(latents.shape, generator=generator, device=device)
    noise = noise + offset_noise * torch.randn((batch, channels, frames, 1, 1), generator=generator, device=device)
    last = noise_scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, last, (batch,), generator=generator, device=device)
    if high_noise_fraction > 0:
        # Where the input shows almost nothing, only the conditions can say where the shape goes.
        noisiest = torch.randint(high_noise_start, last, (batch,), generator=generator, device=device)
        chosen = torch.rand(batch, generator=generator, device=device) < high_noise_fraction
        timesteps = torch.where(chosen, noisiest, timesteps)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    target = noise_scheduler.get_velocity(latents, noise, timesteps)
    prediction = unet(noisy, timesteps, text_states, **conditions).sample
    return F.mse_loss(prediction.float(), target.float())


def model_inputs(batch: dict, components: Components, config: TrainConfig, width: int,
                 device: torch.device) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """(clean latents (B, C, F, h, w), conditions, text states) of a pixel or latent-cache batch."""
    if "moments" in batch:
        moments, rows = batch["moments"].to(device), batch.get("appearance")
    else:
        moments, rows = encode_pixels(components, batch["pixel_values"].to(device), width)
    latents = sample_latents(moments, components.vae.config.scaling_factor)
    # Caption dropout trains the unconditional prediction that classifier-free guidance needs.
    keep = torch.rand(len(batch["captions"])) >= config.text_dropout
    captions = [caption if k else "" for caption, k in zip(batch["captions"], keep.tolist())]
    conditions = higen_conditions(latents, rows, width, prior=config.structure_decoupling)
    if latents.shape[2] > 1 and config.uniform_motion_factors > 0:
        # Per-pair factors tell the model which frames change; inference's single γm does not, so the caption must.
        factors = conditions["motion_factors"]  # (B, F-1)
        uniform = torch.rand(factors.shape[0], 1, device=factors.device) < config.uniform_motion_factors
        conditions["motion_factors"] = torch.where(uniform, factors.mean(dim=1, keepdim=True), factors)
    return latents, conditions, encode_text(components, captions, device)


# ----------------------------------------------------------------------------------------------------------------
# Outputs


def write_samples(accelerator: Accelerator, unet, components: Components, ema: EMAModel | None,
                  config: TrainConfig, step: int) -> None:
    """MP4 and GIF of each sample prompt (main process), with the EMA weights when there are some."""
    model = accelerator.unwrap_model(unet)
    if ema is not None:
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
    model.eval()
    pipe = HiGenPipeline(components.vae, components.text_encoder, components.tokenizer, unet=model,
                         scheduler=default_scheduler())
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator(accelerator.device).manual_seed(config.seed)  # not the training RNG
    with accelerator.autocast():
        videos = pipe(config.sample_prompts, num_inference_steps=config.sample_inference_steps,
                      guidance_scale=config.sample_guidance_scale, motion_factor=config.sample_motion_factor,
                      generator=generator).frames
    folder = Path(config.output_dir) / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    for i, (prompt, frames) in enumerate(zip(config.sample_prompts, videos)):
        settings = {"step": step, "prompt": prompt, "motion_factor": config.sample_motion_factor,
                    "num_inference_steps": config.sample_inference_steps,
                    "guidance_scale": config.sample_guidance_scale, "seed": config.seed}
        export_mp4(frames, folder / f"step-{step:06d}-{i}.mp4", fps=config.fps, metadata=settings)
        export_gif(frames, folder / f"step-{step:06d}-{i}.gif", fps=config.fps)
    model.train()
    if ema is not None:
        ema.restore(model.parameters())


def save_final(accelerator: Accelerator, unet, components: Components, ema: EMAModel | None,
               output_dir: Path) -> Path:
    """DIR/final: a HiGenPipeline folder (EMA weights if EMA, float32), written beside and then moved in."""
    state = accelerator.get_state_dict(unet)  # every process: gathers shards under FSDP / ZeRO-3
    final = output_dir / "final"
    if accelerator.is_main_process:
        model = HiGenUNet3DModel.from_config(accelerator.unwrap_model(unet).config)
        model.load_state_dict(state)
        if ema is not None:
            ema.copy_to(model.parameters())
        pipe = HiGenPipeline(components.vae.float(), components.text_encoder.float(), components.tokenizer,
                             unet=model.float(), scheduler=default_scheduler())
        tmp = output_dir / "final.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        pipe.save_pretrained(tmp)
        if final.exists():
            shutil.rmtree(final)
        tmp.replace(final)
    accelerator.wait_for_everyone()
    return final


def report_skips(accelerator: Accelerator, stats: SkipStats, output_dir: Path) -> None:
    """Log the data skips of this run and write them to logs/data_skips.json for the studio."""
    if stats.total():
        logger.warning(f"Data: {stats.summary()}", main_process_only=True)
    if accelerator.is_main_process:
        (output_dir / "logs" / "data_skips.json").write_text(json.dumps(
            {"total": stats.total(), "counts": stats.counts, "examples": stats.examples}, indent=2))


def truncate_log(log_path: Path, step: int) -> None:
    """On resume, drop the log lines of steps after the checkpoint: they are about to be trained again."""
    if log_path.is_file():
        lines = [line for line in log_path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        log_path.write_text("".join(line + "\n" for line in lines))


# ----------------------------------------------------------------------------------------------------------------
# Training


def train(config: TrainConfig) -> int:
    output_dir = Path(config.output_dir)
    tracker = None
    if config.report_to == "tensorboard":
        from accelerate.utils import is_tensorboard_available

        tracker = "tensorboard" if is_tensorboard_available() else None
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision, gradient_accumulation_steps=config.gradient_accumulation_steps,
        log_with=tracker, project_config=ProjectConfiguration(project_dir=str(output_dir),
                                                              logging_dir=str(output_dir / "logs")),
        # Image processes leave the temporal layers unused; DDP must not wait for their gradients.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        # Warm-up and decay count optimizer steps, whatever the number of processes.
        step_scheduler_with_optimizer=False,
    )
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
    if device.type == "cpu" and config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    torch.backends.cuda.matmul.allow_tf32 = config.allow_tf32  # Ampere+: ~2x faster float32 matmuls, 10-bit mantissa
    torch.backends.cudnn.allow_tf32 = config.allow_tf32
    resume_from = resolve_resume(config.resume, output_dir)
    if accelerator.is_main_process:
        (output_dir / "logs").mkdir(parents=True, exist_ok=True)
        (output_dir / "config.json").write_text(config_to_json(config))

    # 1. Who trains on what: one process interleaves images and videos by step; several split by process, and each
    #    kind's data is split among the processes that train on it.
    used = [k for k in KINDS if config.image_fraction != (0.0 if k == "image" else 1.0)]
    by_process = process_kinds(world, config.image_fraction) if world > 1 else None
    my_kind = by_process[rank] if by_process else None
    kinds = [my_kind] if my_kind else used
    shard = {k: (by_process[:rank].count(k), by_process.count(k)) if by_process else (0, 1) for k in kinds}

    # 2. Models. Frozen ones in half precision on a GPU; the trained UNet stays float32 under autocast.
    components = load_components(config)
    set_seed(config.seed, device_specific=True)  # after the tiny builders' own seeding: each process its own noise
    frozen_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(
        config.frozen_dtype,
        torch.float32 if device.type == "cpu" else torch.bfloat16 if accelerator.mixed_precision == "bf16"
        else torch.float16)
    for frozen in (components.vae, components.text_encoder, components.appearance):
        frozen.to(device)
        if frozen_dtype != torch.float32:
            frozen.to(dtype=frozen_dtype)
    unet = components.unet
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    width = unet.config.appearance_width
    non_spatial = [p for n, p in unet.named_parameters() if unet.parameter_kind(n) != "spatial"]
    grad_factors = scale_gradients_by_kind(unet)
    # The ablation's switches: a decoupling that is off leaves its zero-initialised inputs at zero, so the trained
    # model ignores the prior (structure) or the motion and appearance factors (content) whatever it is given.
    frozen_additions = ([unet.prior_conv_in] if not config.structure_decoupling else []) + (
        [unet.motion_embedding, unet.appearance_embedding] if not config.content_decoupling else [])
    for module in frozen_additions:
        module.requires_grad_(False)
    trained = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=config.learning_rate, weight_decay=config.weight_decay,
                                  betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_epsilon)
    lr_scheduler = get_scheduler(config.lr_scheduler, optimizer, num_warmup_steps=config.lr_warmup_steps,
                                 num_training_steps=config.max_train_steps)
    ema = None
    if config.use_ema:
        ema = EMAModel(unet.parameters(), decay=config.ema_decay, foreach=True, model_cls=HiGenUNet3DModel,
                       model_config=unet.config)
        ema.to(device)
        accelerator.register_for_checkpointing(ema)
    unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)

    # 3. Data, optionally through the latent cache (which every process helps to build, whatever it trains on).
    data = resolve_data(config)
    stats = SkipStats()
    # The latent cache is built by every process together, so its shards are split among all of them.
    datasets = {k: build_dataset(k, data[k], config, stats, None if config.cache_latents else shard[k])
                for k in (used if config.cache_latents else kinds)}
    collate = collate_skipping
    if config.cache_latents:
        cache_root = Path(config.cache_dir or output_dir / "latent_cache")
        # The cache holds VAE moments and appearance rows, so only the models that made them matter: a stage that
        # continues from another (a new init_from) with the same VAE reuses its cache.
        vae_source = config.vae if config.vae is not None else config.init_from
        for k in used:
            fingerprint = {"kind": k, "data": data[k], "models": [vae_source, config.appearance_model],
                           "clip": [config.num_frames, config.fps, config.height, config.width], "seed": config.seed}
            datasets[k] = build_latent_cache(accelerator, datasets[k], cache_root / k, fingerprint, components, width,
                                             config.batch_size, config.dataloader_num_workers)
        collate = collate_cached

    # 4. Resume: accelerate restores model, optimizer, LR scheduler, grad scaler, EMA and every process's RNG;
    #    the checkpoint's JSON gives the step and each process's data position.
    step, positions = 0, {k: (0, 0) for k in kinds}
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        if ema is not None:
            ema.to(device)
        state = read_state(resume_from)
        step = state["step"]
        saved = state["data_position"]
        if len(saved) == world:
            positions = {k: tuple(saved[rank][k]) for k in kinds}
        else:  # another number of processes: the exact order cannot be kept; start each stream's next epoch
            logger.warning(f"Resuming {len(saved)} processes' run with {world}: data order restarts at next epoch.")
            positions = {k: (max((p[k][0] for p in saved if k in p), default=-1) + 1, 0) for k in kinds}
        logger.info(f"Resumed from {resume_from} at step {step}.", main_process_only=True)
    streams = {k: BatchStream(datasets[k], config.image_batch_size if k == "image" else config.batch_size, collate,
                              config.dataloader_num_workers, config.seed, shard[k], positions[k]) for k in kinds}

    log_path = output_dir / "logs" / "train_log.jsonl"
    if accelerator.is_main_process:
        if resume_from is not None:
            truncate_log(log_path, step)
        tracked = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in config.to_dict().items()}
        accelerator.init_trackers("higen", config=tracked)
    noise_scheduler = default_scheduler()
    progress = tqdm(total=config.max_train_steps, initial=step, desc="train",
                    disable=not (accelerator.is_local_main_process and config.progress_bar))
    logger.info(f"{world} process(es), kinds {by_process or kinds}, {config.max_train_steps} steps, "
                f"{sum(p.numel() for p in unet.parameters()) / 1e6:.1f}M parameters", main_process_only=True)

    def checkpoint_state() -> dict:
        local = [list(streams[k].position) if k in streams else [-1, -1] for k in KINDS]
        gathered = accelerator.gather(torch.tensor(local, device=device).flatten()).view(world, len(KINDS), 2)
        return {"step": step, "world_size": world, "config": config.to_dict(),
                "data_position": [{k: gathered[r, i].tolist() for i, k in enumerate(KINDS) if gathered[r, i, 0] >= 0}
                                  for r in range(world)]}

    def save(at: int) -> Path:
        return save_checkpoint(accelerator, output_dir, at, checkpoint_state(), config.checkpoints_total_limit)

    # 5. The loop: one iteration is one optimizer step of gradient_accumulation_steps micro-batches.
    consecutive_nonfinite, saved_at, last_time = 0, None, time.time()
    with StopSignal() as stop:
        while step < config.max_train_steps:
            kind = my_kind or step_kind(step, config.image_fraction)
            # Image batches train only the spatial (text-to-image) parameters; their gradients are scaled.
            trains_all = kind == "video" or not config.structure_decoupling
            grad_factors.update(spatial=config.spatial_grad_scale, temporal=float(trains_all), higen=float(trains_all))
            losses, nonfinite, samples = [], False, 0
            for _ in range(config.gradient_accumulation_steps):
                batch = streams[kind].next()
                samples += len(batch["captions"])
                with accelerator.accumulate(unet):
                    latents, conditions, text_states = model_inputs(batch, components, config, width, device)
                    loss = diffusion_loss(unet, latents, conditions, text_states, noise_scheduler, config.offset_noise,
                                          high_noise_fraction=config.high_noise_fraction,
                                          high_noise_start=config.high_noise_start)
                    # Backward even when non-finite, so that every process takes part in DDP's reduction; the
                    # gradients are thrown away below.
                    accelerator.backward(loss)
                    nonfinite |= not torch.isfinite(loss).item()
                    losses.append(loss.item() if not nonfinite else float("nan"))
            # One small exchange per step: every process learns of a bad loss or a stop request anywhere.
            local = torch.tensor([float(np.mean(losses)), float(kind == "image"), float(nonfinite),
                                  float(stop.name is not None), float(samples)], device=device)
            everyone = accelerator.gather(local).view(world, 5)
            stop_requested = bool(everyone[:, 3].any())

            if bool(everyone[:, 2].any()):
                optimizer.zero_grad(set_to_none=True)
                consecutive_nonfinite += 1
                logger.warning(f"step {step}: non-finite loss, step skipped "
                               f"({consecutive_nonfinite} in a row).", main_process_only=True)
                if consecutive_nonfinite >= config.max_consecutive_nonfinite:
                    raise TrainingError(
                        f"{consecutive_nonfinite} non-finite losses in a row at step {step}. The weights are those "
                        f"of step {step}; lower learning_rate, use mixed_precision bf16, or check the data.")
            elif accelerator.sync_gradients:
                consecutive_nonfinite = 0
                if world == 1 and kind == "image" and config.structure_decoupling:
                    for param in non_spatial:  # no gradient at all: AdamW leaves them and their moments alone
                        param.grad = None
                if config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(unet.parameters(), config.max_grad_norm)
                optimizer.step()
                if not accelerator.optimizer_step_was_skipped:  # fp16 overflow: warm-up counts real steps
                    lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.step(accelerator.unwrap_model(unet).parameters())
                step += 1

                now = time.time()
                record = {"step": step, "loss": everyone[:, 0].mean().item(), "lr": lr_scheduler.get_last_lr()[0],
                          "samples_per_s": everyone[:, 4].sum().item() / (now - last_time),
                          "kind": kind, "time": now}
                if world > 1:  # per-kind losses: the processes train different kinds
                    for k, is_image in (("image", 1.0), ("video", 0.0)):
                        rows = everyone[everyone[:, 1] == is_image]
                        if len(rows):
                            record[f"loss_{k}"] = rows[:, 0].mean().item()
                if accelerator.is_main_process:
                    with open(log_path, "a") as log:
                        log.write(json.dumps(record) + "\n")
                    accelerator.log({"loss": record["loss"], "lr": record["lr"]}, step=step)
                progress.update(1)
                progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", kind=kind,
                                     sps=f"{record['samples_per_s']:.1f}")

                if config.checkpointing_steps and step % config.checkpointing_steps == 0:
                    saved_at = save(step)
                if config.sample_every and step % config.sample_every == 0:
                    if accelerator.is_main_process:
                        write_samples(accelerator, unet, components, ema, config, step)
                    accelerator.wait_for_everyone()
                last_time = time.time()  # samples/s measures training, not saving or sampling

            if stop_requested:
                path = saved_at if saved_at is not None and saved_at.name == f"step-{step:06d}" else save(step)
                progress.close()
                report_skips(accelerator, stats, output_dir)
                accelerator.print(f"Stopped by {stop.name or 'a signal on another process'} at step {step}: "
                                  f"checkpoint saved to {path}. Continue with --resume latest.")
                accelerator.end_training()
                return 0

    progress.close()
    if saved_at is None or saved_at.name != f"step-{step:06d}":
        save(step)  # the end state, so that a longer run can continue from it
    final = save_final(accelerator, unet, components, ema, output_dir)
    report_skips(accelerator, stats, output_dir)
    accelerator.print(f"Trained {step} steps; pipeline saved to {final}.")
    accelerator.end_training()
    return 0


def check_data_command(config: TrainConfig) -> int:
    """--check-data: decode every listed file once and print what training would skip."""
    data = resolve_data(config)
    report = check_data(data["video"]["manifests"] or None, data["image"]["manifests"] or None, config.num_frames,
                        config.fps, config.height, config.width, num_workers=config.dataloader_num_workers)
    print(f"videos usable: {report['videos']}\nimages usable: {report['images']}\n{report['skipped'].summary()}")
    if data["video"]["shards"] or data["image"]["shards"]:
        print("Tar shards are not checked ahead: their bad samples are skipped and counted while training.")
    return 0 if report["videos"] or report["images"] else 1


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("higen_core").setLevel(logging.INFO)
    try:
        config, args = parse_args(argv)
        return check_data_command(config) if args.check_data else train(config)
    except (ConfigError, TrainingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, ConfigError) else 1


if __name__ == "__main__":
    sys.exit(main())
