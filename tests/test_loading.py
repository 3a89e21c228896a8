"""The one loader: folders, "tiny", device/dtype/offload choices, and one-line errors for every mistake."""

import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

from higen_core import HiGenPipeline, PipelineLoadError, load_pipeline, set_cpu_threads
from higen_core.loading import is_hub_id, resolve_device, resolve_dtype
from higen_core.testing import tiny_pipeline


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-higen")
    tiny_pipeline().save_pretrained(path)
    return path


def test_a_folder_loads_in_the_asked_dtype_without_warnings(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation of from_pretrained's dtype keyword, or any other
        pipe = load_pipeline(str(folder), device="cpu", dtype="bfloat16")
    assert pipe.unet.dtype == torch.bfloat16 and pipe.device.type == "cpu"
    assert load_pipeline(str(folder)).unet.dtype == torch.float32  # the CPU's default


def test_tiny_is_built_in_code():
    pipe = load_pipeline("tiny", dtype=torch.float32)
    assert type(pipe).__name__ == "HiGenPipeline" and pipe.unet.config.num_frames == 8


@pytest.mark.parametrize("make, message", [
    (lambda tmp: str(tmp / "missing"), "no such folder: "),
    (lambda tmp: (tmp / "model_index.json").write_text("[1, 2") and str(tmp),
     "model_index.json is not a valid pipeline index (expected a JSON object)."),
    (lambda tmp: str(tmp), "is not a pipeline folder (it has no model_index.json)"),
    (lambda tmp: (tmp / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
     and str(tmp), "holds a StableDiffusionPipeline, not a HiGenPipeline"),
])
def test_folder_mistakes_are_one_line(tmp_path, make, message):
    with pytest.raises(PipelineLoadError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        load_pipeline(make(tmp_path))
    assert "\n" not in str(error.value)


def test_a_folder_that_fails_to_load_says_why_in_one_line(folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(PipelineLoadError) as error:
        load_pipeline(str(broken))
    reason = " ".join(str(error.value.__cause__).split())
    assert str(error.value) == f"cannot load a HiGen pipeline from {broken}: {reason}"


@pytest.mark.parametrize("error, reason", [
    (OSError("a\n  multi-line\treason"), "a multi-line reason"),
    (RuntimeError(), "RuntimeError"),  # no text: its kind
    (OSError("x" * 600), "x" * 500),  # cut to one readable line
])
def test_the_reason_a_load_failed_is_one_line(folder, monkeypatch, error, reason):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(HiGenPipeline, "from_pretrained", fail)
    with pytest.raises(PipelineLoadError) as raised:
        load_pipeline(str(folder))
    assert str(raised.value) == f"cannot load a HiGen pipeline from {folder}: {reason}"


@pytest.mark.parametrize("source, expected", [
    ("owner/name", True), ("owner/name.v2", True), ("name", False), ("owner/name/more", False),
    ("./owner/name", False), ("~/name", False), ("owner//name", False), ("own er/name", False),
    ("owner/na:me", False),
])
def test_hub_ids_are_told_from_paths(source, expected):
    assert is_hub_id(source) is expected


def test_a_relative_path_whose_folder_exists_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    (tmp_path / "assets").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineLoadError, match="^no such folder: assets/shape-model"):
        load_pipeline("assets/shape-model")


@pytest.mark.parametrize("kwargs, message", [
    ({"dtype": "float8"}, "dtype must be one of"),
    ({"device": "gpu"}, "is not a torch device"),
    ({"offload": "disk"}, "offload must be one of"),
    ({"device": "cpu", "offload": "model"}, "needs a cuda device"),
])
def test_option_mistakes_are_one_line(kwargs, message):
    with pytest.raises(PipelineLoadError, match=message):
        load_pipeline("tiny", **kwargs)


def test_loading_builds_in_the_asked_dtype_with_a_silent_progress_bar_unless_asked():
    pipe = load_pipeline("tiny", dtype="float16")
    assert pipe.unet.dtype == pipe.vae.dtype == torch.float16
    assert pipe._progress_bar_config == {"disable": True}
    assert load_pipeline("tiny", progress_bar=True)._progress_bar_config == {"disable": False}


def test_a_gpu_gets_half_precision_by_default_and_offload_where_asked(monkeypatch):
    """What a machine with a GPU gets, checked here by telling torch it has one and recording what the pipeline is
    asked to do (moving anything to a GPU needs one)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == torch.device("cuda")
    assert resolve_dtype(None, torch.device("cuda")) == torch.float16
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    calls = []
    for name in ("enable_model_cpu_offload", "enable_sequential_cpu_offload", "to"):
        monkeypatch.setattr(HiGenPipeline, name, lambda self, *a, _name=name, **k: calls.append((_name, a, k)))
    for offload in ("model", "sequential", None):
        load_pipeline("tiny", device="cuda:1", dtype="float32", offload=offload)
    assert calls == [("enable_model_cpu_offload", (), {"device": torch.device("cuda:1")}),
                     ("enable_sequential_cpu_offload", (), {"device": torch.device("cuda:1")}),
                     ("to", (torch.device("cuda:1"),), {})]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(PipelineLoadError, match="no CUDA GPU"):
        load_pipeline("tiny", device="cuda")


def test_cpu_threads_default_to_one_per_two_cores():
    code = "import os, torch, higen_core; n = higen_core.set_cpu_threads(); print(n, torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(max(1, (os.cpu_count() or 2) // 2))] * 2
    with pytest.raises(PipelineLoadError, match="positive integer"):
        set_cpu_threads(0)


@pytest.mark.parametrize("cores, threads", [(8, 4), (3, 1), (1, 1), (None, 1)])
def test_cpu_threads_are_half_the_cores(cores, threads, monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    try:
        assert set_cpu_threads() == torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    for wrong in (True, 1.0, "2", -1):
        with pytest.raises(PipelineLoadError, match=f"CPU threads must be a positive integer; got {wrong!r}"):
            set_cpu_threads(wrong)
