"""The Train tab's workspace (studio.train_tab): confinement, the exact command, a real subprocess run with a stand-in
trainer (log, loss plot data, checkpoints, SIGTERM)."""

import os
import sys
import time
from pathlib import Path

import pytest

from studio import StudioError
from studio.train_tab import TrainingWorkspace

FAKE_TRAINER = [sys.executable, str(Path(__file__).with_name("fake_trainer.py"))]


@pytest.fixture
def workspace(tmp_path):
    root = tmp_path / "ws"
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "tiny.yaml").write_text("init_from: tiny\n")
    (root / "data").mkdir()
    ws = TrainingWorkspace(root, trainer=FAKE_TRAINER)
    yield ws
    if ws.running():
        ws.process.kill()
        ws.process.wait()


def test_paths_outside_the_workspace_are_refused(workspace, tmp_path):
    outside = tmp_path / "secret"
    outside.mkdir()
    (workspace.root / "escape").symlink_to(outside)
    for path in ("../secret", str(outside), "escape/run", "~/run", "data/../../secret"):
        with pytest.raises(StudioError, match="outside the workspace"):
            workspace.resolve(path)
    assert workspace.resolve("runs/a") == workspace.root / "runs" / "a"
    assert workspace.resolve(str(workspace.root / "data")) == workspace.root / "data"
    with pytest.raises(StudioError, match="does not exist"):
        workspace.resolve("configs/missing.yaml", must_exist=True)
    with pytest.raises(StudioError, match="outside the workspace"):
        workspace.build_command("", "runs/a", {"video_data": "data ../secret"}, False)
    assert workspace.config_files() == ["configs/tiny.yaml"]


def test_the_command_is_an_exact_argument_list(workspace):
    fields = workspace.parse_fields({"max_train_steps": "20", "learning_rate": "", "video_data": "data"},
                                    "use_ema: true\nsample-prompts = 'a red circle' 'a blue square'")
    command = workspace.build_command("configs/tiny.yaml", "runs/a", fields, resume=True)
    root = str(workspace.root)
    assert command == [*FAKE_TRAINER, "--config", f"{root}/configs/tiny.yaml", "--output-dir", f"{root}/runs/a",
                       "--max-train-steps", "20", "--video-data", "data", "--use-ema", "true",
                       "--sample-prompts", "a red circle", "a blue square", "--resume", "latest"]
    for more, message in (("no_such_field: 1", "not a field"), ("output_dir: /", "set by the form"),
                          ("just words", "one field per line")):
        with pytest.raises(StudioError, match=message):
            workspace.parse_fields({}, more)


def test_a_run_streams_its_log_plots_its_loss_lists_checkpoints_and_stops(workspace):
    output = workspace.resolve("runs/a")
    command = workspace.build_command("configs/tiny.yaml", "runs/a", {}, False)
    pid = workspace.start(command, output)
    assert os.getpgid(pid) == pid  # a session of its own: it outlives the page and the studio's terminal
    with pytest.raises(StudioError, match="stop it first"):
        workspace.start(command, output)

    deadline = time.time() + 30
    while len(workspace.loss_table(output)) < 6 and time.time() < deadline:
        time.sleep(0.1)
    table = workspace.loss_table(output)
    assert list(table.columns) == ["step", "loss", "kind"] and len(table) >= 6
    assert set(table["kind"]) == {"image", "video"} and table["loss"].iloc[0] == 1.0
    assert ["step-000003", "yes"] in workspace.checkpoints(output)
    assert "fake trainer --config" in workspace.log_tail(output)
    assert workspace.status().startswith("Running: pid")

    assert "SIGTERM" in workspace.stop()
    assert workspace.process.wait(timeout=20) == 0
    assert "exiting" in workspace.log_tail(output)
    assert workspace.status().startswith("Finished with exit code 0")
    assert workspace.stop() == "No run is going on."


def test_a_half_written_log_line_is_skipped(workspace):
    logs = workspace.resolve("runs/b") / "logs"
    logs.mkdir(parents=True)
    (logs / "train_log.jsonl").write_text('{"step": 1, "loss": 0.5, "kind": "video"}\n{"step": 2, "lo')
    assert workspace.loss_table(logs.parent).to_dict("records") == [{"step": 1, "loss": 0.5, "kind": "video"}]
