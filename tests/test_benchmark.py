"""The benchmark (higen_core.benchmark) on tiny components and a CPU: every stage and mode reported, FLOP counts,
half-precision agreement of the official way and ours, the JSON figures. Times are printed, never asserted."""

import contextlib
import io
import json
import math

import pytest
import torch

from higen_core import benchmark, load_pipeline

STEPS, FRAMES = 2, 4
TINY = ["--size", "tiny", "--device", "cpu", "--steps", str(STEPS), "--frames", str(FRAMES), "--runs", "1",
        "--warmup", "0", "--preset", "dpm", "deepcache"]
STAGES = ("prior", "video", "decode", "total")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[str, dict]:
    """One CPU run of `python -m higen_core.benchmark --size tiny` (few steps and runs): its output and its JSON."""
    path = tmp_path_factory.mktemp("benchmark") / "figures.json"
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert benchmark.main(TINY + ["--json", str(path)]) == 0
    print(output.getvalue())  # the figures, for whoever reads the test log
    return output.getvalue(), json.loads(path.read_text())


def test_prints_every_stage_and_mode(tiny_run):
    text, _ = tiny_run
    for mode in ("reference (official way)", "default (offload=none)", "preset dpm (1 steps)",
                 "preset deepcache (2 steps)", "diffusers UNet3D, DDIM loop"):
        assert mode in text
    table = [line.split() for line in text.splitlines() if line.startswith("  ")]
    for stage in STAGES:
        # reference, default and the presets have every stage; diffusers' loop has video and total
        assert sum(stage in row for row in table) >= (5 if stage in ("video", "total") else 4), stage
    for figure in ("FLOPs per call", "Per denoising step", "Ratios: reference/default whole generation",
                   "Max |reference - default|: video latents", "Preset dpm:", "Preset deepcache:"):
        assert figure in text


def test_flops_are_counted_and_grow_with_frames(tiny_run):
    _, figures = tiny_run
    flops = figures["flops"]
    assert all(isinstance(v, int) and v > 0 for v in flops.values())
    assert flops["unet_video_call"] > flops["unet_prior_call"]
    assert set(flops) == {"unet_prior_call", "unet_video_call", "vae_decode_frame", "diffusers_unet3d_call"}


def test_json_has_the_documented_keys(tiny_run):
    _, figures = tiny_run
    assert {"config", "flops", "modes", "offload", "presets", "diffusers_unet3d", "default_step_seconds",
            "default_setup", "ratios", "max_abs_diff", "compile", "notes"} <= set(figures)
    for mode in ("reference", "default"):
        assert set(figures["modes"][mode]) == set(STAGES)
        for entry in figures["modes"][mode].values():
            assert set(entry) == {"seconds", "peak_memory_bytes", "warmup_seconds", "mfu"}
            assert entry["seconds"] > 0
            assert entry["peak_memory_bytes"] is None and entry["mfu"] is None  # "n/a" on a CPU
    assert set(figures["offload"]) == {"none"}
    assert figures["presets"]["dpm"]["steps"] == 1 and figures["presets"]["deepcache"]["steps"] == STEPS
    for preset in figures["presets"].values():  # fast presets change the result, by a reported amount
        assert 0 < preset["max_abs_diff"] < math.inf and preset["speedup_over_default"] > 0
    assert set(figures["ratios"]) == {"reference_over_default", "diffusers_over_default_step"}
    assert set(figures["max_abs_diff"]) == {"prior_latents", "video_latents", "frames"}
    assert figures["config"]["dtype"] == "bfloat16" and figures["config"]["frames"] == FRAMES


def test_default_mode_matches_the_official_way_within_half_precision(tiny_run):
    """Both modes approximate the same fp32 computation in bfloat16, so ours may differ from the official result by
    its own rounding plus the official one's. Allowing ours twice the official error gives |ours - official| <=
    |ours - fp32| + |official - fp32| <= 3 |official - fp32|."""
    _, figures = tiny_run
    cpu = torch.device("cpu")
    unet, vae = benchmark.build_components("tiny")
    pipe = benchmark._pipeline(unet, vae)
    inputs = benchmark.make_inputs(pipe, FRAMES, cpu)
    with torch.no_grad():
        exact, _ = benchmark.measure(
            benchmark.default_stages(pipe, inputs, STEPS, benchmark.DefaultSetup({}, FRAMES, None)), cpu, 0, 1)
        official, _ = benchmark.measure(benchmark.reference_stages(pipe, inputs, STEPS, torch.bfloat16), cpu, 0, 1)
    official_error = (official["video"] - exact["video"]).abs().max().item()
    difference = figures["max_abs_diff"]["video_latents"]
    assert math.isfinite(difference) and 0 < official_error
    assert difference <= 3 * official_error, (difference, official_error)


def test_full_size_on_a_cpu_points_to_tiny(capsys, monkeypatch):
    # The message quotes the full size's FLOPs; a stand-in count keeps this test from building it.
    counts = {"unet_prior_call": 6 * 10**11, "unet_video_call": 3 * 10**13, "vae_decode_frame": 10**12}
    monkeypatch.setattr(benchmark, "workload_flops", lambda *args: counts)
    assert benchmark.main(["--device", "cpu"]) == 2
    assert "--size tiny" in capsys.readouterr().out


def test_tiny_size_is_the_tiny_pipeline():
    # `--size tiny` times the same network and VAE as `load_pipeline("tiny")`, which the CLI and the tests run.
    unet, vae = benchmark.build_components("tiny")
    pipe = load_pipeline("tiny", device="cpu", dtype="float32")
    for built, loaded in ((unet, pipe.unet), (vae, pipe.vae)):
        weights = loaded.state_dict()
        assert all(torch.equal(value, weights[name]) for name, value in built.state_dict().items())


def test_offload_needs_an_accelerator():
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--size", "tiny", "--device", "cpu", "--offload", "model"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_memory_modes_compile_and_graphs(tmp_path):
    """On a GPU: peak memory for every memory mode, CUDA graphs and compiled stages without recompiles."""
    path = tmp_path / "figures.json"
    assert benchmark.main(["--size", "tiny", "--device", "cuda", "--steps", "3", "--runs", "1", "--compile",
                           "--offload", "none", "model", "sequential", "--json", str(path)]) == 0
    figures = json.loads(path.read_text())
    assert set(figures["offload"]) == {"none", "model", "sequential"}
    for stats in figures["offload"].values():
        assert all(entry["peak_memory_bytes"] > 0 for entry in stats.values())
    assert figures["compile"]["graphs"] == 4
