# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""HiGen image-video joint training (Qing et al., CVPR 2024, Sections 3.3-3.4 and 4.1).

From the repository's root (relative paths in a config are relative to the working directory):

    python -m higen_core.train --config higen_core/configs/train-tiny.yaml --output-dir runs/tiny   # ~1 min, CPU
    accelerate launch -m higen_core.train --config run.yaml           # several GPUs (DDP)
    torchrun --nproc_per_node 2 -m higen_core.train --config run.yaml # several processes on CPUs (gloo)
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
read by the studio's training tab), samples/ and final/, a HiGenPipeline folder that keeps the generation settings
init_from's pipeline recommends. SIGTERM or Ctrl-C saves a checkpoint at the next step boundary and exits with code 0.
OUTPUT_DIR holds one run at a time: while a run works, its run.lock names it, and a second run into the folder is
refused (a run killed outright leaves a run.lock that the next one takes over).

A bad field, flag, config file, manifest or output folder fails before any model loads: `error: FIELD: MESSAGE` and
exit code 2. A run that cannot go on (a diverged loss, data without a usable sample) exits with code 1.

`train()` at the bottom is the whole run; the `Run` it drives holds the state and does each stage. The pieces it is
built from are in `higen_core.training`: config, models, data and streams (batches), latents (the latent cache),
objective (the loss and who trains on what), checkpoint and outputs (samples, the final pipeline, logs).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import diffusers
import huggingface_hub
import numpy as np
import torch
import transformers
from accelerate import Accelerator, PartialState
from accelerate.logging import get_logger
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .lora import lora_config
from .pipeline_higen import default_scheduler
from .training.checkpoint import read_state, resolve_resume, save_checkpoint
from .training.config import ConfigError, TrainConfig, TrainingError, config_to_json, parse_args
from .training.data import SkipStats, check_data, collate_skipping
from .training.latents import build_latent_cache, collate_cached
from .training.lock import output_dir_lock
from .training.models import load_components, place_frozen_models
from .training.objective import (KINDS, assign_roles, diffusion_loss, model_inputs, sample_generators,
                                 scale_gradients_by_kind)
from .training.outputs import append_log, report_skips, save_final, save_lora, truncate_log, write_samples
from .training.streams import BatchStream, build_dataset, manifest_errors, resolve_data
from .unet_higen import HiGenUNet3DModel

logger = get_logger("higen_core.train")  # not __main__ under `python -m`


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


@dataclass
class StepReport:
    """One optimizer step as every process saw it: each process reports once per step (one small gather), so every
    process learns of a bad loss or a stop request anywhere."""

    kind: str  # this process's kind of batch
    losses: torch.Tensor  # (processes,) each process's mean loss over its micro-batches
    images: torch.Tensor  # (processes,) True where the process trained on images
    samples: float  # samples trained on, all processes together
    nonfinite: bool  # some process's loss was not finite: the step was skipped
    stop: bool  # some process was asked to stop
    stepped: bool = False  # the optimizer stepped: the step counts


def start_process_group() -> bool:
    """Join the run's processes, before anything else asks who is the main one; returns whether they run on CPUs.

    Started by torchrun on a machine without CUDA, processes form a (gloo) group only when accelerate is told that
    they run on CPUs. `accelerate launch --cpu --num_processes N` starts a single process unless it is given an MPI
    hostfile; that process would train alone while its user believes N do, so it is refused."""
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1 or int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
    asked_for_several_cpus = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") and \
        "MASTER_ADDR" in os.environ
    if asked_for_several_cpus and not several:
        raise TrainingError("`accelerate launch --cpu --num_processes N` started a single process (without "
                            "--mpirun_hostfile it starts one). For N processes on this machine's CPUs, run "
                            "`torchrun --nproc_per_node N -m higen_core.train ...` (or `accelerate launch --multi_gpu "
                            "--num_processes N ...`, which starts them the same way).")
    sharded = [name for name, variable in (("FSDP", "ACCELERATE_USE_FSDP"), ("DeepSpeed", "ACCELERATE_USE_DEEPSPEED"))
               if os.environ.get(variable, "").lower() in ("1", "true", "yes")]
    if sharded:
        # Joint training scales each kind's gradients with hooks on the parameters (scale_gradients_by_kind). FSDP
        # runs the network on views of its flat parameters, so those hooks never fire (checked with two processes
        # and use_orig_params): image steps would silently train the temporal layers.
        raise TrainingError(f"{sharded[0]} is not supported: joint training's per-kind gradient factors are hooks on "
                            "the parameters, which sharded parameters bypass. Use DDP (`accelerate launch "
                            "--multi_gpu`, or an accelerate config without FSDP/DeepSpeed), with "
                            "--gradient-checkpointing and --lora-rank to fit memory.")
    cpu = several and not torch.cuda.is_available()
    PartialState(cpu=cpu)
    return cpu


def make_accelerator(config: TrainConfig, output_dir: Path, cpu: bool = False) -> Accelerator:
    tracker = None
    if config.report_to == "tensorboard":
        from accelerate.utils import is_tensorboard_available

        tracker = "tensorboard" if is_tensorboard_available() else None
    return Accelerator(
        cpu=cpu, mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps, log_with=tracker,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        # Image processes leave the temporal layers unused; DDP must not wait for their gradients.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        # Warm-up and decay count optimizer steps, whatever the number of processes.
        step_scheduler_with_optimizer=False,
    )


class Run:
    """One training run on this process: accelerator, models, optimizer, data streams and progress. `train()` calls
    its stages in order; every process makes the same calls, since saving, sampling and each step's exchange are
    collective."""

    # --- Setup -----------------------------------------------------------------------------------------------------

    def __init__(self, config: TrainConfig, cpu: bool = False):
        """The accelerator, this process's role in joint training and the run folder."""
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.accelerator = make_accelerator(config, self.output_dir, cpu)
        self.device, self.world = self.accelerator.device, self.accelerator.num_processes
        if self.device.type == "cpu" and config.cpu_threads:
            torch.set_num_threads(config.cpu_threads)
        torch.backends.cuda.matmul.allow_tf32 = config.allow_tf32  # Ampere+: ~2x faster float32 matmuls
        torch.backends.cudnn.allow_tf32 = config.allow_tf32
        if not config.progress_bar:  # nor those of loading and saving models, which a log file would fill up with
            huggingface_hub.utils.disable_progress_bars()
            diffusers.utils.logging.disable_progress_bar()
            transformers.utils.logging.disable_progress_bar()
        self.resume_from = resolve_resume(config.resume, self.output_dir)
        self.log_path = self.output_dir / "logs" / "train_log.jsonl"
        if self.accelerator.is_main_process:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "config.json").write_text(config_to_json(config))
        self.roles = assign_roles(self.world, self.accelerator.process_index, config.image_fraction)
        self.step, self.saved_at, self.consecutive_nonfinite = 0, None, 0

    def load_data(self) -> dict[str, Dataset]:
        """Each kind's dataset for this process. Reading the manifests, it comes before the models: a bad manifest
        fails in a second, not after minutes of loading."""
        config, roles = self.config, self.roles
        self.data = data = resolve_data(config)
        self.stats = SkipStats()
        if not config.cache_latents:
            self.collate = collate_skipping
            return {k: build_dataset(k, data[k], config, self.stats, roles.shard[k]) for k in roles.kinds}
        # Every process helps to build each kind's cache, whatever it trains on, so each reads all of the data.
        self.collate = collate_cached
        return {k: build_dataset(k, data[k], config, self.stats) for k in roles.used}

    def load_models(self) -> None:
        """The trained UNet (float32, under autocast with mixed precision), the frozen models, the per-kind gradient
        factors, AdamW with its LR schedule, and the EMA."""
        config, accelerator = self.config, self.accelerator
        self.components = load_components(config)
        # After the tiny builders' own seeding; each process its own stream, for dropout (the training noise is drawn
        # per sample: objective.sample_generators).
        set_seed(config.seed, device_specific=True)
        place_frozen_models(self.components, config.frozen_dtype, self.device, accelerator.mixed_precision)
        unet = self.components.unet
        if config.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        self.width = unet.config.appearance_width
        if config.lora_rank:
            # LoRA: only the adapters train; the base weights stay bit-identical.
            unet.requires_grad_(False)
            unet.add_adapter(lora_config(config.lora_rank, config.lora_alpha, config.lora_target_modules))
        # The ablation's switches: a decoupling that is off leaves its zero-initialised inputs at zero, so the trained
        # model ignores the prior (structure) or the motion and appearance factors (content) whatever it is given.
        frozen_additions = ([unet.prior_conv_in] if not config.structure_decoupling else []) + (
            [unet.motion_embedding, unet.appearance_embedding] if not config.content_decoupling else [])
        for module in frozen_additions:
            module.requires_grad_(False)
        self.trained = trained = [p for p in unet.parameters() if p.requires_grad]
        self.non_spatial = [p for n, p in unet.named_parameters() if p.requires_grad and
                            unet.parameter_kind(n) != "spatial"]
        self.grad_factors = scale_gradients_by_kind(unet)
        optimizer = torch.optim.AdamW(trained, lr=config.learning_rate, weight_decay=config.weight_decay,
                                      betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_epsilon)
        lr_scheduler = get_scheduler(config.lr_scheduler, optimizer, num_warmup_steps=config.lr_warmup_steps,
                                     num_training_steps=config.max_train_steps)
        self.ema = None
        if config.use_ema:
            self.ema = EMAModel(unet.parameters(), decay=config.ema_decay, foreach=True, model_cls=HiGenUNet3DModel,
                                model_config=unet.config)
            self.ema.to(self.device)
            accelerator.register_for_checkpointing(self.ema)
        self.unet, self.optimizer, self.lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)
        self.noise_scheduler = default_scheduler()

    def cache_latents(self, datasets: dict[str, Dataset]) -> dict[str, Dataset]:
        """With cache_latents, each kind's latent cache, built from its dataset by the models; else the datasets."""
        config = self.config
        if not config.cache_latents:
            return datasets
        cache_root = Path(config.cache_dir or self.output_dir / "latent_cache")
        # The cache holds VAE moments and appearance rows, so only the models that made them matter: a stage that
        # continues from another (a new init_from) with the same VAE reuses its cache.
        vae_source = config.vae if config.vae is not None else config.init_from
        caches = {}
        for k in self.roles.used:
            fingerprint = {"kind": k, "data": self.data[k], "models": [vae_source, config.appearance_model],
                           "clip": [config.num_frames, config.fps, config.height, config.width], "seed": config.seed}
            caches[k] = build_latent_cache(self.accelerator, datasets[k], cache_root / k, fingerprint,
                                           self.components, self.width, config.batch_size,
                                           config.dataloader_num_workers)
        return caches

    def restore(self) -> dict[str, tuple[int, int]]:
        """Each kind's data position, (epoch, batches taken), to start from. Resuming, accelerate restores the model,
        optimizer, LR scheduler, grad scaler, EMA and every process's RNG; the checkpoint's JSON gives the step and
        each process's data position."""
        kinds = self.roles.kinds
        if self.resume_from is None:
            return {k: (0, 0) for k in kinds}
        self.accelerator.load_state(str(self.resume_from))
        if self.ema is not None:
            self.ema.to(self.device)
        state = read_state(self.resume_from)
        self.step = state["step"]
        saved = state["data_position"]
        if len(saved) == self.world:
            positions = {k: tuple(saved[self.accelerator.process_index][k]) for k in kinds}
        else:  # another number of processes: the exact order cannot be kept; start each stream's next epoch
            logger.warning(f"Resuming {len(saved)} processes' run with {self.world}: data order restarts at next "
                           f"epoch.")
            positions = {k: (max((p[k][0] for p in saved if k in p), default=-1) + 1, 0) for k in kinds}
        logger.info(f"Resumed from {self.resume_from} at step {self.step}.", main_process_only=True)
        return positions

    def open_streams(self, datasets: dict[str, Dataset], positions: dict[str, tuple[int, int]]) -> None:
        config = self.config
        self.streams = {k: BatchStream(datasets[k], config.image_batch_size if k == "image" else config.batch_size,
                                       self.collate, config.dataloader_num_workers, config.seed, self.roles.shard[k],
                                       positions[k])
                        for k in self.roles.kinds}

    def start_logging(self) -> None:
        """The JSONL log, the tracker and the progress bar. The log is cut back to the step the run starts from (the
        checkpoint's, or 0): a run killed before its first checkpoint, or after its last, logged steps it is about
        to train again."""
        config, accelerator = self.config, self.accelerator
        if accelerator.is_main_process:
            truncate_log(self.log_path, self.step)
            tracked = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in config.to_dict().items()}
            accelerator.init_trackers("higen", config=tracked)
        self.progress = tqdm(total=config.max_train_steps, initial=self.step, desc="train",
                             disable=not (accelerator.is_local_main_process and config.progress_bar))
        logger.info(f"{self.world} process(es), kinds {self.roles.by_process or self.roles.kinds}, "
                    f"{config.max_train_steps} steps, {sum(p.numel() for p in self.unet.parameters()) / 1e6:.1f}M "
                    f"parameters, {sum(p.numel() for p in self.trained) / 1e6:.2f}M trained", main_process_only=True)
        self.last_time = time.time()

    # --- One optimizer step ----------------------------------------------------------------------------------------

    def optimizer_step(self, kind: str, stop: StopSignal) -> StepReport:
        """gradient_accumulation_steps micro-batches of `kind`, the exchange, then the optimizer step, or none when
        a loss anywhere was not finite."""
        # Image batches train only the spatial (text-to-image) parameters; their gradients are scaled.
        trains_all = kind == "video" or not self.config.structure_decoupling
        self.grad_factors.update(spatial=self.config.spatial_grad_scale, temporal=float(trains_all),
                                 higen=float(trains_all))
        loss, nonfinite, samples = self._backward(kind)
        local = torch.tensor([loss, float(kind == "image"), float(nonfinite), float(stop.name is not None),
                              float(samples)], device=self.device)
        everyone = self.accelerator.gather(local).view(self.world, 5)
        report = StepReport(kind, losses=everyone[:, 0], images=everyone[:, 1] == 1.0,
                            samples=everyone[:, 4].sum().item(), nonfinite=bool(everyone[:, 2].any()),
                            stop=bool(everyone[:, 3].any()))
        if report.nonfinite:
            self._skip_step()
        elif self.accelerator.sync_gradients:
            self._apply_gradients(all_images=bool(report.images.all()))
            report.stepped = True
        return report

    def _backward(self, kind: str) -> tuple[float, bool, int]:
        """(mean loss, whether any was not finite, samples) of this step's micro-batches, gradients accumulated."""
        config, accelerator = self.config, self.accelerator
        losses, nonfinite, samples = [], False, 0
        for micro_batch in range(config.gradient_accumulation_steps):
            batch = self.streams[kind].next()
            samples += len(batch["captions"])
            generators = sample_generators(config.seed, self.step, micro_batch, batch["paths"], self.device)
            with accelerator.accumulate(self.unet):
                latents, conditions, text_states = model_inputs(batch, self.components, config, self.width,
                                                                self.device, generators)
                loss = diffusion_loss(self.unet, latents, conditions, text_states, self.noise_scheduler,
                                      config.offset_noise, generators, high_noise_fraction=config.high_noise_fraction,
                                      high_noise_start=config.high_noise_start)
                # Backward even when non-finite, so that every process takes part in DDP's reduction; the gradients
                # are thrown away by _skip_step.
                accelerator.backward(loss)
                nonfinite |= not torch.isfinite(loss).item()
                losses.append(loss.item() if not nonfinite else float("nan"))
        return float(np.mean(losses)), nonfinite, samples

    def _skip_step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.consecutive_nonfinite += 1
        logger.warning(f"step {self.step}: non-finite loss, step skipped ({self.consecutive_nonfinite} in a row).",
                       main_process_only=True)
        if self.consecutive_nonfinite >= self.config.max_consecutive_nonfinite:
            raise TrainingError(
                f"{self.consecutive_nonfinite} non-finite losses in a row at step {self.step}. The weights are those "
                f"of step {self.step}; lower learning_rate, use mixed_precision bf16, or check the data.")

    def _apply_gradients(self, all_images: bool) -> None:
        config = self.config
        self.consecutive_nonfinite = 0
        if all_images and config.structure_decoupling:
            # Every process took images: the temporal and HiGen parameters got zeros, and a zero gradient still
            # moves a parameter under AdamW's weight decay. No gradient at all leaves them and their moments alone.
            for param in self.non_spatial:
                param.grad = None
        if config.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(self.unet.parameters(), config.max_grad_norm)
        self.optimizer.step()
        if not self.accelerator.optimizer_step_was_skipped:  # fp16 overflow: warm-up counts real steps
            self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.step(self.accelerator.unwrap_model(self.unet).parameters())
        self.step += 1

    # --- After a step ----------------------------------------------------------------------------------------------

    def log(self, report: StepReport) -> None:
        """The step's JSONL line (main process), the tracker and the progress bar."""
        now = time.time()
        record = {"step": self.step, "loss": report.losses.mean().item(), "lr": self.lr_scheduler.get_last_lr()[0],
                  "samples_per_s": report.samples / (now - self.last_time), "kind": report.kind, "time": now}
        if self.world > 1:  # per-kind losses: the processes train different kinds
            for k, trained_images in (("image", True), ("video", False)):
                losses = report.losses[report.images == trained_images]
                if len(losses):
                    record[f"loss_{k}"] = losses.mean().item()
        if self.accelerator.is_main_process:
            append_log(self.log_path, record)
            self.accelerator.log({"loss": record["loss"], "lr": record["lr"]}, step=self.step)
        self.progress.update(1)
        self.progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", kind=report.kind,
                                  sps=f"{record['samples_per_s']:.1f}")
        if not self.config.progress_bar:  # a log file: one plain line per step instead of a bar's refreshes
            self.accelerator.print(f"step {self.step}/{self.config.max_train_steps} · {report.kind} · loss "
                                   f"{record['loss']:.4f} · lr {record['lr']:.2e} · "
                                   f"{record['samples_per_s']:.1f} samples/s", flush=True)

    def save_and_sample(self) -> None:
        """The periodic checkpoint and sample videos, when this step is due for them."""
        config = self.config
        if config.checkpointing_steps and self.step % config.checkpointing_steps == 0:
            self.save()
        if config.sample_every and self.step % config.sample_every == 0:
            if self.accelerator.is_main_process:
                write_samples(self.accelerator, self.unet, self.components, self.ema, config, self.step)
            self.accelerator.wait_for_everyone()
        self.last_time = time.time()  # samples/s measures training, not saving or sampling

    def save(self) -> Path:
        """A checkpoint of this step, with every process's data position (every process must call it)."""
        local = [list(self.streams[k].position) if k in self.streams else [-1, -1] for k in KINDS]
        gathered = self.accelerator.gather(torch.tensor(local, device=self.device).flatten())
        gathered = gathered.view(self.world, len(KINDS), 2)
        state = {"step": self.step, "world_size": self.world, "config": self.config.to_dict(),
                 "data_position": [{k: gathered[r, i].tolist() for i, k in enumerate(KINDS) if gathered[r, i, 0] >= 0}
                                   for r in range(self.world)]}
        self.saved_at = save_checkpoint(self.accelerator, self.output_dir, self.step, state,
                                        self.config.checkpoints_total_limit)
        return self.saved_at

    def checkpoint(self) -> Path:
        """This step's checkpoint: the periodic save's if it was due, else saved now."""
        if self.saved_at is not None and self.saved_at.name == f"step-{self.step:06d}":
            return self.saved_at
        return self.save()

    # --- The end ---------------------------------------------------------------------------------------------------

    def stop(self, signal_name: str | None) -> int:
        """A stop requested on any process: save this step and exit cleanly."""
        path = self.checkpoint()
        self.progress.close()
        report_skips(self.accelerator, self.stats, self.output_dir)
        self.accelerator.print(f"Stopped by {signal_name or 'a signal on another process'} at step {self.step}: "
                               f"checkpoint saved to {path}. Continue with --resume latest.")
        self.accelerator.end_training()
        return 0

    def finish(self) -> int:
        """The last step's checkpoint (a longer run can continue from it) and DIR/final."""
        self.progress.close()
        self.checkpoint()
        report_skips(self.accelerator, self.stats, self.output_dir)
        if self.config.lora_rank:
            lora = save_lora(self.accelerator, self.unet, self.output_dir)
            self.accelerator.print(f"Trained {self.step} steps; LoRA saved to {lora} (pipe.load_lora_weights).")
        else:
            final = save_final(self.accelerator, self.unet, self.components, self.ema, self.output_dir)
            self.accelerator.print(f"Trained {self.step} steps; pipeline saved to {final}.")
        self.accelerator.end_training()
        return 0


def train(config: TrainConfig) -> int:
    """Train as `config` says; returns the exit code (0, also when stopped by a signal)."""
    cpu = start_process_group()
    with output_dir_lock(config.output_dir):  # one run at a time in OUTPUT_DIR: a second is refused here
        run = Run(config, cpu)  # accelerator, who trains on what, the run folder
        datasets = run.load_data()  # the manifests, read before any model loads
        run.load_models()  # UNet, frozen models, optimizer, LR schedule, EMA
        datasets = run.cache_latents(datasets)  # with cache_latents, the datasets' latent caches
        positions = run.restore()  # resuming: weights, optimizer, RNG states, step and data positions
        run.open_streams(datasets, positions)
        run.start_logging()
        with StopSignal() as stop:
            while run.step < config.max_train_steps:
                kind = run.roles.kind_of_step(run.step, config.image_fraction)
                report = run.optimizer_step(kind, stop)  # micro-batches, exchange, optimizer step
                if report.stepped:
                    run.log(report)
                    run.save_and_sample()
                if report.stop:
                    return run.stop(stop.name)
        return run.finish()


def check_data_command(config: TrainConfig) -> int:
    """--check-data: decode every listed file once and print what training would skip (bad captions by their
    manifest's file and line)."""
    data = resolve_data(config)
    report = {"videos": 0, "images": 0, "skipped": SkipStats()}
    for kind in ("video", "image"):  # one kind at a time, so that a bad manifest's error names its field
        manifests = data[kind]["manifests"]
        if not manifests:
            continue
        with manifest_errors(f"{kind}_data"):
            found = check_data(manifests if kind == "video" else None, manifests if kind == "image" else None,
                               config.num_frames, config.fps, config.height, config.width,
                               num_workers=config.dataloader_num_workers)
        report[f"{kind}s"] = found[f"{kind}s"]
        report["skipped"].merge(found["skipped"])
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
