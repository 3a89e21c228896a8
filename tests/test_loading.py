"""The one loader: folders, "tiny", device/dtype/offload choices, and one-line errors for every mistake."""

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from higen_core import PipelineLoadError, load_pipeline, set_cpu_threads
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
    (lambda tmp: str(tmp), "is not a pipeline folder (it has no model_index.json)"),
    (lambda tmp: (tmp / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
     and str(tmp), "holds a StableDiffusionPipeline, not a HiGenPipeline"),
])
def test_folder_mistakes_are_one_line(tmp_path, make, message):
    with pytest.raises(PipelineLoadError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        load_pipeline(make(tmp_path))
    assert "\n" not in str(error.value)


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
