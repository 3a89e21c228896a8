"""Atomic checkpoints: only complete ones count, the newest K are kept, a half-written one is ignored."""

import json

import pytest
import torch
from accelerate import Accelerator

from higen_core.training.checkpoint import (COMPLETE_MARKER, complete_checkpoints, latest_checkpoint, read_state,
                                            resolve_resume, save_checkpoint)


@pytest.fixture
def accelerator():
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    accelerator.prepare(model, optimizer)
    return accelerator


def test_save_keeps_the_newest_complete_ones(tmp_path, accelerator):
    for step in (2, 4, 6):
        path = save_checkpoint(accelerator, tmp_path, step, {"step": step, "data_position": []}, keep=2)
        assert path.name == f"step-{step:06d}" and (path / COMPLETE_MARKER).is_file()
        assert (path / "model.safetensors").is_file() and (path / "optimizer.bin").is_file()
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["step-000004", "step-000006"]
    assert read_state(latest_checkpoint(tmp_path))["step"] == 6
    assert not list((tmp_path / "checkpoints").glob("tmp-*"))


def test_interrupted_saves_are_ignored_and_cleaned(tmp_path, accelerator):
    save_checkpoint(accelerator, tmp_path, 2, {"step": 2}, keep=2)
    # A save killed half-way (tmp folder) and a folder whose marker never got written.
    (tmp_path / "checkpoints" / "tmp-step-000004").mkdir()
    unmarked = tmp_path / "checkpoints" / "step-000003"
    unmarked.mkdir()
    (unmarked / "training_state.json").write_text(json.dumps({"step": 3}))
    assert latest_checkpoint(tmp_path).name == "step-000002"
    assert resolve_resume("latest", tmp_path).name == "step-000002"
    with pytest.raises(ValueError, match="^resume: .* not a complete checkpoint"):
        resolve_resume(str(unmarked), tmp_path)
    save_checkpoint(accelerator, tmp_path, 5, {"step": 5}, keep=2)
    assert not (tmp_path / "checkpoints" / "tmp-step-000004").exists()
    assert latest_checkpoint(tmp_path).name == "step-000005"


def test_resume_latest_without_checkpoints_starts_fresh(tmp_path):
    assert resolve_resume("latest", tmp_path) is None
    assert resolve_resume(None, tmp_path) is None
