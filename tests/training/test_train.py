"""The training loop (higen_core.train) on the tiny components: end to end, the tiny config as committed, joint-training
rules, exact resume, clean stop on SIGTERM, bad data, non-finite losses, the model sources a run can start from and
the settings a fine-tuned model keeps."""

import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import load_file

import higen_core.train as train_module
from higen_core import HiGenPipeline
from higen_core.conditioning import motion_factors_from_latents
from higen_core.pipeline_higen import default_scheduler
from higen_core.testing import tiny_pipeline, tiny_train_config, tiny_unet
from higen_core.train import main
from higen_core.training.checkpoint import latest_checkpoint, read_state
from higen_core.training.config import ConfigError, TrainConfig
from higen_core.training.data import VideoClipDataset, collate_skipping
from higen_core.training.latents import encode_pixels, encode_text, higen_conditions, sample_latents
from higen_core.training.lock import LOCK_FILE, OutputLock, holder_pid
from higen_core.training.models import load_components, tiny_appearance_model
from higen_core.training.objective import (assign_roles, diffusion_loss, model_inputs, process_kinds,
                                           scale_gradients_by_kind, step_kind)
from higen_core.video_io import read_mp4_metadata

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "higen_core" / "configs" / "train-tiny.yaml"
TINY_DATA = REPO / "assets" / "tiny-data"
FINAL_UNET = Path("final") / "unet" / "diffusion_pytorch_model.safetensors"


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models gain nothing from a second thread, and on a busy machine a spinning second thread makes every
    # step several times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_clip(path: Path, frames: int, size: int, seed: int) -> None:
    """A square moving right, as an 8 fps H.264 MP4."""
    rng = np.random.default_rng(seed)
    colour, row = rng.integers(64, 256, 3), int(rng.integers(0, size // 2))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for f in range(frames):
            image = np.zeros((size, size, 3), np.uint8)
            image[row : row + size // 4, f % size : f % size + size // 4] = colour
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """4 videos + a corrupt one + a missing one, 4 images + a missing one."""
    folder = tmp_path_factory.mktemp("data")
    videos, images = [], []
    for i in range(4):
        write_clip(folder / f"clip{i}.mp4", frames=8, size=16, seed=i)
        videos.append({"path": f"clip{i}.mp4", "caption": f"square {i} moves right"})
        pixels = np.zeros((16, 16, 3), np.uint8)
        pixels[4 + i : 8 + i, 4:8] = 255
        PIL.Image.fromarray(pixels).save(folder / f"image{i}.png")
        images.append({"path": f"image{i}.png", "caption": f"a square at {i}"})
    # An MP4 signature, then bytes no demuxer reads (random bytes can probe as another format).
    (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 7)
    videos += [{"path": "corrupt.mp4", "caption": "broken"}, {"path": "gone.mp4", "caption": "missing"}]
    images += [{"path": "gone.png", "caption": "missing"}]
    for name, entries in (("videos.jsonl", videos), ("images.jsonl", images)):
        (folder / name).write_text("".join(json.dumps(e) + "\n" for e in entries))
    return folder


def run_args(out: Path, data: Path = TINY_DATA, **fields) -> list[str]:
    """The tiny config with a few steps, on `data` (a folder with videos.jsonl and images.jsonl), by absolute path so
    that the tests run from any working directory."""
    values = {"output_dir": out, "max_train_steps": 4, "checkpointing_steps": 0, "sample_every": 0,
              "progress_bar": "false", "lr_warmup_steps": 0, "video_data": data / "videos.jsonl",
              "image_data": data / "images.jsonl", **fields}
    return ["--config", str(TINY)] + [item for k, v in values.items() for item in (f"--{k}", str(v))]


def test_end_to_end_writes_checkpoints_log_samples_and_a_loadable_pipeline(tmp_path):
    out = tmp_path / "run"
    argv = run_args(out, checkpointing_steps=2, sample_every=4, sample_inference_steps=1,
                    gradient_accumulation_steps=2, gradient_checkpointing="true")
    assert main(argv) == 0

    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000002", "step-000004"]
    state = read_state(latest_checkpoint(out))
    assert state["step"] == 4 and state["config"]["max_train_steps"] == 4
    assert state["world_size"] == 1 and len(state["data_position"]) == 1  # one process made it
    records = [json.loads(line) for line in (out / "logs" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all({"step", "loss", "lr", "samples_per_s", "kind", "time"} <= set(r) for r in records)
    assert [r["kind"] for r in records] == ["video", "video", "video", "image"]  # 1 step in 4 takes images
    assert all(r["lr"] == pytest.approx(1e-4) for r in records)  # the config's rate, no warm-up
    # Samples a second count the step's samples (2 micro-batches of 2 videos or 8 images) over the step's own time
    # (steps 2 and 4 follow steps that saved nothing).
    for i, samples in ((1, 4), (3, 16)):
        seconds = records[i]["time"] - records[i - 1]["time"]
        assert samples <= records[i]["samples_per_s"] * seconds <= 1.5 * samples
    assert read_mp4_metadata(out / "samples" / "step-000004-0.mp4")["step"] == 4
    assert (out / "samples" / "step-000004-0.gif").is_file()
    assert not (out / LOCK_FILE).exists()  # released: the folder is free for the next run

    pipe = HiGenPipeline.from_pretrained(out / "final")
    assert pipe.unet.config.num_frames == 8 and tuple(pipe.unet.config.sample_size) == (8, 8)
    assert pipe.config.settings is None  # init_from "tiny" records no recommended settings
    video = pipe("a red circle moves right", num_inference_steps=1, motion_factor=50, output_type="latent")
    assert video.latents.shape == (1, 4, 8, 8, 8) and torch.isfinite(video.latents).all()


def test_the_tiny_config_as_committed_trains_from_the_repository_root(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(REPO)  # its data path, assets/tiny-data, is relative to the working directory
    out = tmp_path / "run"
    argv = ["--config", "higen_core/configs/train-tiny.yaml", "--output-dir", str(out), "--max-train-steps", "2",
            "--progress-bar", "false"]
    assert main(argv) == 0
    # Without the bar (a log file): one plain line per step, and no bar of loading or saving either.
    printed = capfd.readouterr()
    steps = [line for line in printed.out.splitlines() if line.startswith("step ")]
    assert [line.split(" · ")[0] for line in steps] == ["step 1/2", "step 2/2"]
    assert all(re.fullmatch(r"step \d/2 · (video|image) · loss \d+\.\d{4} · lr \S+ · \d+\.\d samples/s", line)
               for line in steps)
    assert "it/s]" not in printed.out + printed.err and "%|" not in printed.out + printed.err
    assert [json.loads(line)["step"] for line in (out / "logs" / "train_log.jsonl").read_text().splitlines()] == [1, 2]
    assert json.loads((out / "logs" / "data_skips.json").read_text())["total"] == 0
    assert (out / FINAL_UNET).is_file() and read_state(latest_checkpoint(out))["step"] == 2


def test_tiny_data_holds_relative_paths_only():
    # Committed data must read the same from any checkout: every manifest path is inside the folder.
    for manifest, count in (("videos.jsonl", 24), ("images.jsonl", 24), ("ground_truth.jsonl", 48)):
        lines = (TINY_DATA / manifest).read_text().splitlines()
        assert len(lines) == count
        for line in lines:
            path = Path(json.loads(line)["path"])
            assert not path.is_absolute() and ".." not in path.parts and (TINY_DATA / path).is_file(), path


def test_importing_the_trainer_leaves_the_shapes_world_out():
    # The shapes world is a demo that uses the trainer; the trainer itself reads any data and imports none of it.
    code = "import sys, higen_core.train; print(sorted(m for m in sys.modules if m.startswith('higen_core.shapes')))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_fine_tuning_keeps_the_settings_its_base_recommends(tmp_path):
    settings = {"motion_factor": 30.0, "motion_factor_range": [0.0, 60.0], "guidance_scale": 3.0,
                "example_prompts": ["a red circle on a grey background"]}
    base, base_dir = tiny_pipeline(), tmp_path / "base"
    HiGenPipeline(base.vae, base.text_encoder, base.tokenizer, unet=base.unet, scheduler=base.scheduler,
                  settings=settings).save_pretrained(base_dir)
    out = tmp_path / "run"
    # sample_motion_factor null: the samples take the model's recommended γm.
    assert main(run_args(out, init_from=base_dir, max_train_steps=1, sample_every=1, sample_inference_steps=1,
                         sample_motion_factor="null")) == 0
    index = lambda folder: json.loads((folder / "model_index.json").read_text())
    assert index(out / "final")["settings"] == index(base_dir)["settings"] == settings
    assert HiGenPipeline.from_pretrained(out / "final").settings.motion_factor == 30.0
    assert read_mp4_metadata(out / "samples" / "step-000001-0.mp4")["motion_factor"] == 30.0


def test_loss_falls_on_a_fixed_batch(data):
    config = tiny_train_config(num_frames=8)
    components = load_components(config)
    batch = collate_skipping([VideoClipDataset(data / "videos.jsonl", 8, 8, 16, 16)[0]])
    width = components.unet.config.appearance_width
    moments, rows = encode_pixels(components, batch["pixel_values"], width)
    latents = sample_latents(moments, components.vae.config.scaling_factor)
    conditions = higen_conditions(latents, rows, width)
    text = encode_text(components, batch["captions"], torch.device("cpu"))
    unet, scheduler = components.unet, default_scheduler()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        # The same noise and timesteps every step: only the weights change.
        loss = diffusion_loss(unet, latents, conditions, text, scheduler, 0.1, torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses


@pytest.mark.parametrize("image_fraction, changed", [(1.0, {"spatial"}), (0.0, {"spatial", "temporal", "higen"})])
def test_image_steps_train_only_spatial_parameters(tmp_path, data, image_fraction, changed):
    out = tmp_path / "run"
    assert main(run_args(out, data, image_fraction=image_fraction, max_train_steps=1)) == 0
    before, after = tiny_unet(0), load_file(out / FINAL_UNET)
    kinds = {"spatial": [], "temporal": [], "higen": []}
    for name, param in before.named_parameters():
        kinds[before.parameter_kind(name)].append(not torch.equal(param.detach(), after[name]))
    for kind, moved in kinds.items():
        # Every parameter of a trained kind moves (AdamW's first step is ~lr in every coordinate); the others are
        # bit-identical.
        assert all(moved) if kind in changed else not any(moved), kind
    # AdamW keeps moments only for the parameters that had a gradient.
    optimizer = torch.load(latest_checkpoint(out) / "optimizer.bin", weights_only=False)
    count = sum(len(kinds[k]) for k in changed)
    assert len(optimizer["state"]) == count


def test_an_image_step_gives_no_gradient_to_the_temporal_and_higen_parameters(tmp_path, data, monkeypatch):
    """What an image batch contributes to the gradients themselves, before the optimizer sees them: nothing to the
    temporal layers, the motion and appearance MLPs or the prior stem. (Under several processes those gradients
    are averaged with the video processes' ones, so a contribution here would train them on images.)"""
    seen = []
    original = train_module.Run._apply_gradients

    def inspect(run, all_images):
        unet = run.accelerator.unwrap_model(run.unet)
        kind = "image" if all_images else "video"  # one process: the step's one kind
        for name, param in unet.named_parameters():
            if unet.parameter_kind(name) != "spatial":
                seen.append((kind, name, param.grad is None or not param.grad.any()))
        return original(run, all_images)

    monkeypatch.setattr(train_module.Run, "_apply_gradients", inspect)
    assert main(run_args(tmp_path / "run", data, image_fraction=0.5, max_train_steps=2)) == 0
    image = [(name, zero) for kind, name, zero in seen if kind == "image"]
    video = [(name, zero) for kind, name, zero in seen if kind == "video"]
    assert image and all(zero for _, zero in image), [name for name, zero in image if not zero][:5]
    assert video and not all(zero for _, zero in video)  # a video step does train them


def test_spatial_gradients_are_scaled_by_0_2():
    torch.manual_seed(0)
    reference, scaled = tiny_unet(0), tiny_unet(0)
    factors = scale_gradients_by_kind(scaled)
    factors.update(spatial=0.2)
    inputs = (torch.randn(1, 4, 3, 8, 8), torch.tensor([500]), torch.randn(1, 77, 32))
    conditions = {"spatial_prior": torch.randn(1, 4, 8, 8), "motion_factors": torch.tensor([[20.0, 30.0]])}
    for model in (reference, scaled):
        model(*inputs, **conditions).sample.square().mean().backward()
    grads = dict(reference.named_parameters())
    for name, param in scaled.named_parameters():
        factor = 0.2 if scaled.parameter_kind(name) == "spatial" else 1.0
        torch.testing.assert_close(param.grad, grads[name].grad * factor, rtol=1e-5, atol=1e-9, msg=name)


def test_joint_schedule():
    kinds = [step_kind(s, 0.25) for s in range(400)]
    assert kinds.count("image") == 100 and all(kinds[i : i + 4].count("image") == 1 for i in range(0, 400, 4))
    assert set(step_kind(s, 0.0) for s in range(10)) == {"video"}
    assert process_kinds(8, 0.25) == ["image"] * 2 + ["video"] * 6
    assert process_kinds(4, 0.25) == ["image"] + ["video"] * 3
    assert process_kinds(2, 1.0) == ["image"] * 2 and process_kinds(2, 0.0) == ["video"] * 2  # one kind, on purpose
    with pytest.raises(ConfigError) as error:
        process_kinds(2, 0.2)
    assert str(error.value) == ("image_fraction: 0.2 of 2 processes rounds to 0 image processes: joint training needs "
                                "both kinds, so change it.")
    # One process takes both kinds, step by step; several split them, and each kind's data among its processes.
    one = assign_roles(1, 0, 0.25)
    assert (one.mine, one.kinds, one.shard) == (None, ["video", "image"], {"video": (0, 1), "image": (0, 1)})
    assert [one.kind_of_step(s, 0.25) for s in range(4)] == ["video", "video", "video", "image"]
    assert assign_roles(1, 0, 0.0).kinds == ["video"]
    third = assign_roles(4, 2, 0.25)
    assert (third.mine, third.kinds, third.shard) == ("video", ["video"], {"video": (1, 3)})
    assert assign_roles(4, 0, 0.25).shard == {"image": (0, 1)}


def test_resume_matches_an_uninterrupted_run(tmp_path, data):
    # EMA, warm-up, an epoch boundary (4 videos, batches of 2) and an image step all fall within the 6 steps.
    common = dict(use_ema="true", ema_decay=0.9, lr_warmup_steps=2, learning_rate=1e-3, checkpointing_steps=3)
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert main(run_args(straight, data, max_train_steps=6, **common)) == 0
    assert main(run_args(interrupted, data, max_train_steps=3, **common)) == 0
    assert main(run_args(interrupted, data, max_train_steps=6, resume="latest", **common)) == 0
    for path in (FINAL_UNET, Path("checkpoints/step-000006/model.safetensors")):  # EMA weights, trained weights
        a, b = load_file(straight / path), load_file(interrupted / path)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), path
    log = lambda run: [json.loads(line)["loss"] for line in (run / "logs/train_log.jsonl").read_text().splitlines()]
    assert log(straight) == log(interrupted)


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path, data):
    out = tmp_path / "run"
    argv = run_args(out, data, max_train_steps=100000)
    process = subprocess.Popen([sys.executable, "-m", "higen_core.train", *argv], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    log = out / "logs" / "train_log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.is_file() or len(log.read_text().splitlines()) < 2):
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    assert "Stopped by SIGTERM" in output and "--resume latest" in output
    checkpoint = latest_checkpoint(out)
    assert checkpoint is not None and read_state(checkpoint)["step"] >= 2
    assert not list((out / "checkpoints").glob("tmp-*"))


def logged_steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "logs" / "train_log.jsonl").read_text().splitlines()]


def test_a_second_run_into_a_folder_in_use_is_refused_before_anything_loads(tmp_path, monkeypatch, capsys):
    def no_models(config):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(train_module, "load_components", no_models)
    out = tmp_path / "run"
    holder = OutputLock.take(out)  # another run's, as far as the flock is concerned: a lock of its own
    try:
        assert main(run_args(out)) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: output_dir: {out} is in use by pid {os.getpid()} on ") and "Traceback" not in err
        assert err.rstrip().endswith("wait for it, stop it, or choose another --output-dir.")
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing of the refused run's
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == os.getpid()
    finally:
        holder.release()
    assert not (out / LOCK_FILE).exists()
    OutputLock.take(out).release()  # free again


def test_a_watcher_learns_who_holds_a_folder_without_taking_it(tmp_path):
    out = tmp_path / "run"
    assert holder_pid(out) is None  # no folder
    lock = OutputLock.take(out)
    assert holder_pid(out) == os.getpid() and holder_pid(out) == os.getpid()  # asking twice takes nothing
    lock.release()
    assert holder_pid(out) is None
    (out / LOCK_FILE).write_text('{"pid": 1}')  # left by a run that was killed: not locked
    assert holder_pid(out) is None


def test_a_stale_lock_is_taken_over_and_named(tmp_path, caplog):
    out = tmp_path / "runs" / "first"  # folders made as needed
    out.mkdir(parents=True)
    (out / LOCK_FILE).write_text('{"pid": 1, "host": "old"}\n')  # a killed run's, unlocked
    lock = OutputLock.take(out)
    assert (f"{out / LOCK_FILE} was left by a run that ended without releasing it (killed?): "
            '{"pid": 1, "host": "old"}; taking it over.') in caplog.text
    holder = json.loads((out / LOCK_FILE).read_text())
    assert holder["pid"] == os.getpid() and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}", holder["started"])
    lock.release()
    OutputLock.take(tmp_path / "a" / "b").release()
    assert (tmp_path / "a" / "b").is_dir()


def test_a_killed_runs_lock_is_free_even_while_its_forked_children_live(tmp_path):
    # A DataLoader worker forked by the run shares the lock's file; the lock must still end with the run.
    out = tmp_path / "run"
    code = ("import os, sys, time\nfrom higen_core.training.lock import OutputLock\n"
            f"lock = OutputLock.take({str(out)!r})\nchild = os.fork()\n"
            "if child == 0:\n    time.sleep(60)\n    os._exit(0)\n"
            "print(child, flush=True)\ntime.sleep(60)\n")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    child = int(process.stdout.readline())
    try:
        with pytest.raises(ValueError, match=f"is in use by pid {process.pid} "):
            OutputLock.take(out)
        process.kill()
        process.wait(timeout=60)
        os.kill(child, 0)  # the child is alive...
        OutputLock.take(out).release()  # ...and the lock is free
    finally:
        process.kill()
        os.kill(child, signal.SIGKILL)


def test_a_fresh_start_trims_the_log_of_a_run_killed_before_its_first_checkpoint(tmp_path):
    out = tmp_path / "run"
    (out / "logs").mkdir(parents=True)
    # Steps 1-3 of a killed run, the last line cut short by the kill.
    lines = [json.dumps({"step": step, "loss": 1.0}) for step in (1, 2, 3)]
    (out / "logs" / "train_log.jsonl").write_text("\n".join(lines) + '\n{"step": 4, "lo')
    assert main(run_args(out, max_train_steps=2, resume="latest")) == 0
    assert logged_steps(out) == [1, 2]


def test_bad_captions_are_skipped_while_training_and_named_by_check_data(tmp_path, data, capsys):
    # One character a tokenizer cannot take would otherwise stop the run at its batch, and a resume at the same one.
    folder = tmp_path / "data"
    folder.mkdir()
    videos = [{"path": str(data / f"clip{i}.mp4"), "caption": f"square {i} moves right"} for i in range(4)]
    videos[2]["caption"] = "lone \ud800 surrogate"
    images = [{"path": str(data / f"image{i}.png"), "caption": f"a square at {i}"} for i in range(4)]
    images[1]["caption"] = "bell \x07"
    for name, entries in (("videos.jsonl", videos), ("images.jsonl", images)):
        (folder / name).write_text("".join(json.dumps(e) + "\n" for e in entries))
    assert "\\ud800" in (folder / "videos.jsonl").read_text()
    out = tmp_path / "run"
    assert main(run_args(out, folder, max_train_steps=4)) == 0  # every video and image is read at least once
    skips = json.loads((out / "logs" / "data_skips.json").read_text())
    assert set(skips["counts"]) == {"bad caption"} and skips["counts"]["bad caption"] >= 2
    assert set(skips["examples"]["bad caption"]) == {f"{folder / 'videos.jsonl'}, line 3",
                                                     f"{folder / 'images.jsonl'}, line 2"}
    assert main(["--check-data", *run_args(out, folder)]) == 0
    report = capsys.readouterr().out
    assert "videos usable: 3" in report and "images usable: 3" in report
    assert f"bad caption: 2 (e.g. {folder / 'videos.jsonl'}, line 3, {folder / 'images.jsonl'}, line 2)" in report


def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    # The tiny config as committed, from the repository's root, in a process killed outright after its first
    # checkpoint: it releases nothing, and leaves its run.lock and log lines past the checkpoint behind.
    monkeypatch.chdir(REPO)
    steps = 8

    def argv(out):
        return ["--config", "higen_core/configs/train-tiny.yaml", "--output-dir", str(out), "--max-train-steps",
                str(steps), "--checkpointing-steps", "2", "--sample-every", "0", "--progress-bar", "false"]

    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "higen_core.train", *argv(killed)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not list(killed.glob("checkpoints/step-*/complete")):
        assert process.poll() is None, process.stdout.read()
        assert time.time() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    process.kill()
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert (killed / LOCK_FILE).is_file()  # left behind, unlocked
    assert read_state(latest_checkpoint(killed))["step"] < steps, "the run ended before it could be killed"

    assert main([*argv(killed), "--resume", "latest"]) == 0  # takes the stale lock over
    straight = tmp_path / "straight"
    assert main(argv(straight)) == 0
    for path in (FINAL_UNET, Path(f"checkpoints/step-{steps:06d}/model.safetensors")):
        a, b = load_file(straight / path), load_file(killed / path)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), path
    assert logged_steps(killed) == logged_steps(straight) == list(range(1, steps + 1))
    loss = lambda run: [json.loads(line)["loss"] for line in (run / "logs/train_log.jsonl").read_text().splitlines()]
    assert loss(killed) == loss(straight)
    assert not (killed / LOCK_FILE).exists()


def test_bad_files_are_skipped_and_counted(tmp_path, data, capsys):
    out = tmp_path / "run"
    assert main(run_args(out, data, max_train_steps=4)) == 0  # every video and image is read at least once
    skips = json.loads((out / "logs" / "data_skips.json").read_text())
    assert skips["counts"]["missing"] >= 2 and skips["counts"]["unreadable"] >= 1
    examples = sum(skips["examples"].values(), [])
    assert {"gone.mp4", "gone.png", "corrupt.mp4"} <= {Path(p).name for p in examples}

    assert main(["--check-data", *run_args(out, data)]) == 0
    report = capsys.readouterr().out
    assert "videos usable: 4" in report and "images usable: 4" in report
    assert "3 samples skipped" in report and "gone.mp4" in report and "corrupt.mp4" in report


def test_skips_found_in_dataloader_workers_reach_the_report(tmp_path, data):
    """Decoding in worker processes (the default config uses 2), each skip still reaches the run's report: the
    workers' records travel with their batches."""
    out = tmp_path / "run"
    assert main(run_args(out, data, max_train_steps=8, dataloader_num_workers=2)) == 0
    skips = json.loads((out / "logs" / "data_skips.json").read_text())
    assert skips["counts"]["missing"] >= 2 and skips["counts"]["unreadable"] >= 1, skips
    examples = {Path(p).name for p in sum(skips["examples"].values(), [])}
    assert {"gone.png", "gone.mp4", "corrupt.mp4"} <= examples


def test_nonfinite_losses_skip_steps_then_stop(tmp_path, data, monkeypatch, capsys, caplog):
    real = train_module.diffusion_loss
    calls = []

    def flaky(*args, **kwargs):  # the 2nd loss is NaN, then every one from the 4th
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) == 2 or len(calls) >= 4 else loss

    monkeypatch.setattr(train_module, "diffusion_loss", flaky)
    out = tmp_path / "run"
    assert main(run_args(out, data, max_train_steps=10, max_consecutive_nonfinite=3)) == 1
    assert "3 non-finite losses in a row" in capsys.readouterr().err
    assert "step 1: non-finite loss, step skipped (1 in a row)." in caplog.text
    steps = [json.loads(line)["step"] for line in (out / "logs" / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2]  # losses 1 and 3 trained; 2 was skipped without a step


def test_a_nonfinite_micro_batch_skips_its_whole_step(tmp_path, monkeypatch, caplog):
    real = train_module.diffusion_loss
    calls = []

    def first_nan(*args, **kwargs):  # the first micro-batch of the first step only; its second one is finite
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) == 1 else loss

    monkeypatch.setattr(train_module, "diffusion_loss", first_nan)
    out = tmp_path / "run"
    assert main(run_args(out, max_train_steps=2, gradient_accumulation_steps=2)) == 0
    assert len(calls) == 6  # the skipped step, then two steps of two micro-batches
    assert "step 0: non-finite loss, step skipped (1 in a row)." in caplog.text
    assert all(torch.isfinite(v).all() for v in load_file(out / FINAL_UNET).values())


def test_the_final_pipeline_holds_the_ema_weights(tmp_path):
    weights = {}
    for use_ema in ("true", "false"):
        out = tmp_path / use_ema
        assert main(run_args(out, max_train_steps=2, checkpointing_steps=2, use_ema=use_ema, ema_decay=0.5)) == 0
        final, trained = load_file(out / FINAL_UNET), load_file(out / "checkpoints/step-000002/model.safetensors")
        assert final.keys() == trained.keys()
        weights[use_ema] = all(torch.equal(final[k], trained[k]) for k in final)
    assert weights == {"true": False, "false": True}


def test_trains_from_tar_shards(tmp_path):
    import tarfile

    def shard(path, kind, count, extra=()):
        entries = [json.loads(line) for line in (TINY_DATA / f"{kind}s.jsonl").read_text().splitlines()[:count]]
        with tarfile.open(path, "w") as tar:
            for i, entry in enumerate(entries):
                tar.add(TINY_DATA / entry["path"], f"{i:03d}{Path(entry['path']).suffix}")
                caption = tmp_path / "caption.txt"
                caption.write_text(entry["caption"])
                tar.add(caption, f"{i:03d}.txt")
            for name in extra:
                tar.add(TINY_DATA / entries[0]["path"], name)
        return str(path)

    videos = shard(tmp_path / "videos.tar", "video", 4, extra=["uncaptioned.mp4"])
    images = shard(tmp_path / "images.tar", "image", 8)
    out = tmp_path / "run"
    argv = run_args(out) + ["--video-data", "--image-data", "--video-shards", videos, "--image-shards", images]
    assert main(argv) == 0
    records = [json.loads(line) for line in (out / "logs" / "train_log.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["video", "video", "video", "image"]
    assert json.loads((out / "logs" / "data_skips.json").read_text())["counts"] == {"no caption": 1}
    assert HiGenPipeline.from_pretrained(out / "final").unet.config.num_frames == 8


def test_starts_from_model_folders(tmp_path):
    from diffusers import UNet2DConditionModel
    from transformers import BitImageProcessor

    pipeline_dir = tmp_path / "higen"
    tiny_pipeline(seed=1).save_pretrained(pipeline_dir)
    appearance_dir = tmp_path / "dino"
    tiny_appearance_model().save_pretrained(appearance_dir)
    BitImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}).save_pretrained(appearance_dir)

    # Fine-tuning a HiGen pipeline: its frozen models come along.
    config = TrainConfig(init_from=str(pipeline_dir), appearance_model=str(appearance_dir), num_frames=4, height=16,
                         width=16)
    components = load_components(config)
    source = HiGenPipeline.from_pretrained(pipeline_dir)
    assert all(torch.equal(a, b) for a, b in zip(components.unet.state_dict().values(),
                                                  source.unet.state_dict().values()))
    assert components.unet.config.num_frames == 4 and components.appearance.size == (16, 16)
    assert components.appearance(torch.rand(3, 3, 16, 16) * 2 - 1).shape == (3, 32)
    # Another pipeline class's folder (a text-to-video pipeline holding these parts): its unet and frozen models.
    index = json.loads((pipeline_dir / "model_index.json").read_text())
    (pipeline_dir / "model_index.json").write_text(json.dumps({**index, "_class_name": "TextToVideoSDPipeline"}))
    other = load_components(config)
    assert all(torch.equal(a, b) for a, b in zip(other.unet.state_dict().values(), source.unet.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(other.text_encoder.state_dict().values(),
                                                 source.text_encoder.state_dict().values()))

    # A Stable Diffusion 2.x UNet folder: its layers become the spatial ones.
    unet2d_dir = tmp_path / "sd-unet"
    torch.manual_seed(0)
    UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        attention_head_dim=(2, 4),  # diffusers counts heads here: 16 channels each
        use_linear_projection=True,
    ).save_pretrained(unet2d_dir)
    config = TrainConfig(init_from=str(unet2d_dir), vae="tiny", text_encoder="tiny", tokenizer="tiny",
                         appearance_model="tiny", num_frames=4, height=16, width=16)
    unet = load_components(config).unet
    assert unet.config.in_channels == 4 and unet.config.num_frames == 4
    # Without a vae field and no pipeline to take one from, loading fails naming the field.
    with pytest.raises(ValueError, match="^vae: not given"):
        load_components(TrainConfig(init_from=str(unet2d_dir), appearance_model="tiny", height=16, width=16,
                                    num_frames=4))


def test_latent_cache_is_built_once_and_reused_by_resumes_and_next_stages(tmp_path, data):
    out = tmp_path / "run"
    assert main(run_args(out, data, max_train_steps=4, cache_latents="true")) == 0
    cache = out / "latent_cache"
    videos, images = sorted((cache / "video").glob("*.safetensors")), sorted((cache / "image").glob("*.safetensors"))
    assert len(videos) == len(images) == 4  # the usable ones
    sample = load_file(videos[0])
    assert sample["moments"].shape == (8, 8, 8, 8) and sample["appearance"].shape == (8, 8)
    assert load_file(images[0])["moments"].shape == (8, 1, 8, 8)
    built = videos[0].stat().st_mtime_ns
    assert main(run_args(out, data, max_train_steps=6, cache_latents="true", resume="latest")) == 0
    assert videos[0].stat().st_mtime_ns == built  # reused, not rebuilt
    assert len((out / "logs" / "train_log.jsonl").read_text().splitlines()) == 6
    # A next stage, continued from this run's weights with the same VAE, reuses the cache too.
    assert main(run_args(tmp_path / "stage2", data, init_from=out / "final", cache_latents="true",
                         cache_dir=cache)) == 0
    assert videos[0].stat().st_mtime_ns == built


def test_starts_from_a_config_file(tmp_path):
    from higen_core.testing import tiny_unet_config

    config_file = tmp_path / "unet.json"
    config_file.write_text(json.dumps({"_class_name": "HiGenUNet3DModel", **tiny_unet_config()}))
    # The frozen models from plain model folders (not a pipeline's subfolders), as the shapes recipe names them.
    pipe = tiny_pipeline()
    for name in ("vae", "text_encoder", "tokenizer"):
        getattr(pipe, name).save_pretrained(tmp_path / name)
    config = TrainConfig(init_from=str(config_file), vae=str(tmp_path / "vae"),
                         text_encoder=str(tmp_path / "text_encoder"), tokenizer=str(tmp_path / "tokenizer"),
                         appearance_model="tiny", num_frames=4, height=16, width=16)
    unet = load_components(config).unet
    assert tuple(unet.config.block_out_channels) == tiny_unet_config()["block_out_channels"]
    # A new model: HiGen's additions and the temporal layers' outputs start at zero.
    assert not unet.motion_embedding.linear_2.weight.any() and not unet.prior_conv_in.weight.any()


def test_ablation_switches_keep_the_switched_off_inputs_at_zero(tmp_path):
    # init_from "tiny" randomises the zero-initialised layers; a config file starts them at zero, as a real run does.
    from higen_core.testing import tiny_unet_config

    config_file = tmp_path / "unet.json"
    config_file.write_text(json.dumps({"_class_name": "HiGenUNet3DModel", **tiny_unet_config()}))
    out = tmp_path / "run"
    argv = run_args(out, init_from=str(config_file), structure_decoupling="false", content_decoupling="false")
    assert main(argv) == 0
    unet = HiGenPipeline.from_pretrained(out / "final").unet
    for module in (unet.prior_conv_in, unet.motion_embedding.linear_2, unet.appearance_embedding.linear_2):
        assert all(not p.any() for p in module.parameters())
    assert unet.time_embedding.linear_2.weight.any() and unet.down_blocks[0].temp_convs[0].conv4[-1].weight.any()


@pytest.mark.parametrize("uniform", [0.0, 1.0])
def test_uniform_motion_factors_give_each_clip_one_factor_as_inference_does(uniform):
    # Inference asks for one γm for every pair of frames; uniform_motion_factors trains on the same (their clip mean).
    config = tiny_train_config(uniform_motion_factors=uniform, text_dropout=0.0)
    components = load_components(config)
    # Two clips that change only between their last two frames, as the shapes world's colour changes do.
    mean = torch.zeros(2, 4, 4, 2, 2)  # (B, C, F, h, w)
    mean[:, :, 3] = torch.tensor([6.0, 12.0]).view(2, 1, 1, 1)
    moments = torch.cat([mean, torch.full_like(mean, -30.0)], dim=1)  # log-variance -30: the latents are the means
    batch = {"moments": moments, "appearance": torch.ones(2, 4, 4), "captions": ["a", "b"]}
    latents, conditions, _ = model_inputs(batch, components, config, 4, torch.device("cpu"))
    measured = motion_factors_from_latents(latents)  # (B, F-1): 0, 0 and the last pair's change
    assert (measured[:, :2] == 0).all() and (measured[:, 2] > 0).all()
    expected = measured.mean(dim=1, keepdim=True).expand_as(measured) if uniform else measured
    torch.testing.assert_close(conditions["motion_factors"], expected)


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_high_noise_fraction_draws_that_share_of_timesteps_from_the_noisiest(fraction):
    # Only at the noisiest timesteps must the caption say where a shape goes; the option trains more of them.
    seen = []

    def unet(noisy, timesteps, text_states, **conditions):
        seen.append(timesteps)
        return SimpleNamespace(sample=torch.zeros_like(noisy))

    latents = torch.zeros(4000, 1, 1, 1, 1)
    diffusion_loss(unet, latents, {}, None, default_scheduler(), 0.0, torch.Generator().manual_seed(0),
                   high_noise_fraction=fraction, high_noise_start=900)
    timesteps = seen[0]
    assert timesteps.min() >= 0 and timesteps.max() <= 999
    share = (timesteps >= 900).float().mean().item()
    assert share == pytest.approx(fraction + (1 - fraction) * 0.1, abs=0.03)  # uniform draws land there 10% of the time


def test_check_data_reports_each_kind_it_is_given(tmp_path, data, capsys):
    from higen_core.train import check_data_command

    def check(**fields):
        config = TrainConfig(num_frames=8, height=16, width=16, fps=8, **fields)
        return check_data_command(config), capsys.readouterr().out

    code, out = check(video_data=[], image_data=[str(data)], image_fraction=1.0)
    assert code == 0 and out.startswith("videos usable: 0\nimages usable: 4\n1 samples skipped")
    code, out = check(video_data=[str(data / "videos.jsonl")], image_data=[])
    assert code == 0 and out.startswith("videos usable: 4\nimages usable: 0\n2 samples skipped")
    # Nothing usable: the command fails, so that a script stops before training.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"path": str(data / "corrupt.mp4"), "caption": "broken"}) + "\n")
    code, out = check(video_data=[str(bad)], image_data=[])
    assert code == 1 and out.startswith("videos usable: 0\nimages usable: 0\n1 samples skipped")
    # Shards are read while training only.
    code, out = check(video_data=[str(data / "videos.jsonl")], image_data=[], image_shards=[str(tmp_path / "x.tar")])
    assert out.endswith("Tar shards are not checked ahead: their bad samples are skipped and counted while training.\n")
    with pytest.raises(ConfigError, match="^image_data: "):
        check(video_data=[], image_data=[str(tmp_path / "none.jsonl")], image_fraction=1.0)
