"""Training in several processes, really run: two CPU processes started by torchrun (gloo), as `accelerate launch`
starts them on GPUs. Each process trains on its own share of the work; checkpoints, `--resume latest` and the final
pipeline work as in one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from higen_core import HiGenPipeline
from higen_core.testing import tiny_unet
from higen_core.train import main
from higen_core.training.streams import BatchStream

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "higen_core" / "configs" / "train-tiny.yaml"
TINY_DATA = REPO / "assets" / "tiny-data"
FINAL_UNET = Path("final") / "unet" / "diffusion_pytorch_model.safetensors"


def train_in_two_processes(out: Path, processes: int = 2, **fields) -> subprocess.CompletedProcess:
    values = {"output_dir": out, "max_train_steps": 4, "checkpointing_steps": 2, "sample_every": 0,
              "progress_bar": "false", "lr_warmup_steps": 0, "dataloader_num_workers": 0,
              "video_data": TINY_DATA / "videos.jsonl", "image_data": TINY_DATA / "images.jsonl", **fields}
    argv = ["--config", str(TINY)] + [item for k, v in values.items() for item in (f"--{k}", str(v))]
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                          str(processes), "-m", "higen_core.train", *argv], cwd=REPO, capture_output=True, text=True,
                         timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"{processes} process(es)" in run.stderr
    return run


def test_two_processes_resume_like_an_uninterrupted_run_and_save_a_loadable_pipeline(tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    train_in_two_processes(straight, image_fraction=0.5)
    train_in_two_processes(interrupted, image_fraction=0.5, max_train_steps=2)
    train_in_two_processes(interrupted, image_fraction=0.5, resume="latest")
    a, b = load_file(straight / FINAL_UNET), load_file(interrupted / FINAL_UNET)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (interrupted / "logs/train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    # One process trained on images and one on videos at every step: both kinds' parameters moved.
    start = tiny_unet(0)
    for kind in ("spatial", "temporal", "higen"):
        names = [n for n, _ in start.named_parameters() if start.parameter_kind(n) == kind]
        assert any(not torch.equal(start.state_dict()[n], a[n]) for n in names), kind
    pipe = HiGenPipeline.from_pretrained(straight / "final")
    assert pipe.animate(torch.zeros(1, 4, 8, 8), "a red circle", num_frames=4, num_inference_steps=1,
                        output_type="latent").latents.shape == (1, 4, 4, 8, 8)


def test_two_processes_train_as_one_process_with_their_global_batch(tmp_path):
    # Each sample's noise, timestep, posterior draw and caption dropout come from its own generator (seeded by the
    # step and the sample's path), and the two processes' shares of an epoch are the one process's batches split in
    # two: the gradients differ only by the order of float sums. A large AdamW epsilon keeps the steps of parameters
    # with near-zero gradients linear in them; at 1e-8 such a step is about lr * sign(gradient), and the sums' last
    # bits can flip it.
    fields = dict(image_fraction=0.0, max_train_steps=3, checkpointing_steps=0, text_dropout=0.5, adam_epsilon=1e-3)
    train_in_two_processes(tmp_path / "two", batch_size=2, **fields)
    train_in_two_processes(tmp_path / "one", processes=1, batch_size=4, **fields)
    two, one = load_file(tmp_path / "two" / FINAL_UNET), load_file(tmp_path / "one" / FINAL_UNET)
    start = tiny_unet(0).state_dict()
    assert any(not torch.equal(start[name], one[name]) for name in one)
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-6, msg=name)


def test_when_every_process_takes_images_only_the_spatial_parameters_move(tmp_path):
    out = tmp_path / "images"
    # Weight decay moves a parameter even when its gradient is zero: only no gradient at all leaves it alone.
    train_in_two_processes(out, image_fraction=1.0, max_train_steps=2, checkpointing_steps=0, weight_decay=0.1)
    start, after = tiny_unet(0), load_file(out / FINAL_UNET)
    for name, param in start.named_parameters():
        moved = not torch.equal(param.detach(), after[name])
        assert moved == (start.parameter_kind(name) == "spatial"), name


class Numbers(Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return i


def test_processes_sharing_a_kind_read_different_samples():
    def epoch(shard):
        stream = BatchStream(Numbers(), 1, lambda batch: {"index": batch[0]}, 0, seed=3, shard=shard)
        return [stream.next()["index"] for _ in range(5)]

    first, second = epoch((0, 2)), epoch((1, 2))
    assert not set(first) & set(second) and sorted(first + second) == list(range(10))


def test_accelerate_launch_cpu_that_starts_one_process_is_refused(monkeypatch, capsys, tmp_path):
    # What `accelerate launch --cpu --num_processes 2` gives the one process it starts without an MPI hostfile.
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["--config", str(TINY), "--output-dir", str(tmp_path / "run")]) == 1
    assert "torchrun --nproc_per_node N -m higen_core.train" in capsys.readouterr().err


def test_fsdp_and_deepspeed_are_refused_with_what_to_use_instead(monkeypatch, capsys, tmp_path):
    # Under FSDP the per-kind gradient hooks never fire, so joint training would train the temporal layers on images.
    for variable, name, value in (("ACCELERATE_USE_FSDP", "FSDP", "true"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed",
                                                                            "yes")):
        monkeypatch.setenv(variable, value)
        assert main(["--config", str(TINY), "--output-dir", str(tmp_path / "run")]) == 1
        error = capsys.readouterr().err
        assert error.startswith(f"error: {name} is not supported: joint training's per-kind gradient factors")
        assert "Use DDP (`accelerate launch --multi_gpu`" in error
        monkeypatch.delenv(variable)
        assert not (tmp_path / "run").exists()
