"""The Train tab's workspace (studio.train_tab): confinement, the exact command, a real subprocess run with a stand-in
trainer (log, loss plot data, checkpoints, SIGTERM)."""

import json
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
        workspace.build_command("", "runs/a", {"video_data": ["data", "../secret"]}, False)
    assert workspace.config_files() == ["configs/tiny.yaml"]


def test_the_command_is_an_exact_argument_list(workspace):
    fields = workspace.parse_fields({"max_train_steps": "20", "learning_rate": "", "video_data": "data"},
                                    "use_ema: true\nsample-prompts = a red circle\nsample_prompts: a blue square")
    command = workspace.build_command("configs/tiny.yaml", "runs/a", fields, resume=True)
    root = str(workspace.root)
    assert command == [*FAKE_TRAINER, f"--config={root}/configs/tiny.yaml", f"--output-dir={root}/runs/a",
                       "--max-train-steps=20", "--video-data", f"{root}/data", "--use-ema=true",
                       "--sample-prompts", "a red circle", "a blue square", "--progress-bar=false", "--resume=latest"]
    for more, message in (("no_such_field: 1", "not a field"), ("output_dir: /", "the form's output folder"),
                          ("cache_dir: cache", "not a free field"), ("resume: latest", "not a free field"),
                          ("config: configs/tiny.yaml", "not a free field"), ("just words", "one field per line"),
                          ("seed: 1\nseed: 2", "given twice")):
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
    assert "fake trainer --config=" in workspace.log_tail(output)
    assert workspace.status().startswith("Running: pid")

    assert "SIGTERM" in workspace.stop()
    assert workspace.process.wait(timeout=20) == 0
    assert "exiting" in workspace.log_tail(output)
    assert workspace.status().startswith("Stopped at a checkpoint: tick “Resume”")
    assert workspace.stop() == "No run is going on."


def test_a_run_that_ends_by_itself_or_fails_says_so(workspace, tmp_path):
    output = workspace.resolve("runs/short")
    fields = workspace.parse_fields({"max_train_steps": "2"}, "")
    workspace.start(workspace.build_command("", "runs/short", fields, False), output)
    assert workspace.process.wait(timeout=60) == 0 and workspace.status().startswith("Finished: output runs/short")
    failing = TrainingWorkspace(tmp_path / "ws", trainer=[sys.executable, "-c", "import sys; sys.exit(3)"])
    failing.start([*failing.trainer], failing.resolve("runs/x"))
    assert failing.process.wait(timeout=60) == 3 and failing.status().startswith("Failed with exit code 3")


def test_a_half_written_log_line_is_skipped(workspace):
    logs = workspace.resolve("runs/b") / "logs"
    logs.mkdir(parents=True)
    (logs / "train_log.jsonl").write_text('{"step": 1, "loss": 0.5, "kind": "video"}\n{"step": 2, "lo')
    assert workspace.loss_table(logs.parent).to_dict("records") == [{"step": 1, "loss": 0.5, "kind": "video"}]


def test_a_value_never_becomes_a_flag(workspace, tmp_path):
    """Text that looks like flags stays the one value of its field, as the trainer's own parser reads the command."""
    from higen_core.training.config import build_parser

    evil = tmp_path / "evil"
    fields = workspace.parse_fields(
        {"seed": f"1 --output-dir {evil}", "video_data": "data\ndata"},
        f"sample_prompts: a --output-dir {evil}\nsample_prompts: b --config=/etc/passwd\n"
        f"lr_scheduler: --output-dir={evil}")
    command = workspace.build_command("", "runs/a", fields, resume=False)
    args = build_parser().parse_args(command[len(FAKE_TRAINER):])
    assert args.output_dir == str(workspace.root / "runs" / "a") and args.config is None
    assert args.sample_prompts == [f"a --output-dir {evil}", "b --config=/etc/passwd"]
    assert args.seed == f"1 --output-dir {evil}" and args.lr_scheduler == f"--output-dir={evil}"
    assert args.video_data == [str(workspace.root / "data")] * 2

    with pytest.raises(StudioError, match="starts with “-”"):
        workspace.build_command("", "runs/a", workspace.parse_fields({}, f"sample_prompts: --output-dir={evil}"),
                                False)
    with pytest.raises(StudioError, match="one value, on one line"):
        workspace.parse_fields({"seed": "1\n--output-dir"}, "")
    with pytest.raises(StudioError, match="control character"):
        workspace.parse_fields({}, "sample_prompts: a\x00b")


def test_every_path_and_model_field_stays_in_the_workspace(workspace, tmp_path):
    (tmp_path / "secret").mkdir()
    (workspace.root / "models").mkdir()
    (workspace.root / "models" / "unet.json").write_text("{}")
    for name in ("vae", "text_encoder", "tokenizer", "appearance_model", "init_from", "video_shards",
                 "image_shards", "image_data"):
        for value, message in ((str(tmp_path / "secret"), "outside the workspace"), ("../secret", "outside"),
                               ("owner/model", "does not exist"), ("models/missing", "does not exist")):
            with pytest.raises(StudioError, match=message):
                workspace.build_command("", "runs/a", workspace.parse_fields({}, f"{name}: {value}"), False)
    fields = workspace.parse_fields({"init_from": "models/unet.json"}, "vae: tiny\ntext_encoder: models")
    command = workspace.build_command("", "runs/a", fields, False)
    root = workspace.root
    assert command[-4:-1] == [f"--init-from={root}/models/unet.json", "--vae=tiny", f"--text-encoder={root}/models"]


def test_an_injection_attempt_writes_nothing_outside_the_workspace(workspace, tmp_path):
    evil = tmp_path / "evil"
    fields = workspace.parse_fields({"seed": f"3 --output-dir {evil}"},
                                    f"sample_prompts: x --output-dir {evil}\nsample_every: 0")
    output = workspace.resolve("runs/c")
    workspace.start(workspace.build_command("configs/tiny.yaml", "runs/c", fields, False), output)
    deadline = time.time() + 30
    while not (output / "logs" / "arguments.json").is_file() and time.time() < deadline:
        time.sleep(0.1)
    workspace.stop()
    assert workspace.process.wait(timeout=20) == 0
    seen = json.loads((output / "logs" / "arguments.json").read_text())
    assert seen["output_dir"] == str(output) and seen["sample_prompts"] == [f"x --output-dir {evil}"]
    assert not evil.exists()


def test_sample_videos_show_as_the_trainer_writes_them(workspace):
    output = workspace.resolve("runs/samples")
    fields = workspace.parse_fields({"max_train_steps": "9", "sample_every": "4"}, "")
    workspace.start(workspace.build_command("", "runs/samples", fields, False), output)
    assert workspace.process.wait(timeout=60) == 0
    shown = workspace.samples(output)
    assert [caption for _, caption in shown] == ["step 8 · sample 0", "step 4 · sample 0"]  # newest first
    assert all(Path(path).is_file() and Path(path).parent == output / "samples" for path, _ in shown)


def test_a_reopened_page_and_a_restarted_studio_find_the_last_run(workspace):
    output = workspace.resolve("runs/again")
    form = {"config": "configs/tiny.yaml", "output_dir": "runs/again", "resume": False, "more": "",
            "max_train_steps": "1000"}
    workspace.start(workspace.build_command("configs/tiny.yaml", "runs/again", {"max_train_steps": "1000"}, False),
                    output)
    workspace.remember_form(form)
    deadline = time.time() + 30
    while not any(row[1] == "yes" for row in workspace.checkpoints(output)) and time.time() < deadline:
        time.sleep(0.1)
    assert workspace.restored_form() == {**form, "resume": False}  # running: the form it was started with
    workspace.remember_form({**form, "resume": True})  # as if started as a resumed run
    assert workspace.restored_form()["resume"] is True
    workspace.remember_form(form)

    # The studio restarts while the run goes on (it has a session of its own): the new one finds it by its lock.
    restarted = TrainingWorkspace(workspace.root, trainer=FAKE_TRAINER)
    assert restarted.restored_form() == {**form, "resume": False}
    assert restarted.status(output).startswith(f"Running: pid {workspace.process.pid}, output runs/again (started "
                                               f"before this studio restarted")
    assert restarted.status() == "No run started from this studio yet."
    assert "SIGTERM" in restarted.stop(output)
    assert workspace.process.wait(timeout=20) == 0
    # Stopped with a checkpoint: a page that opens now has Resume ticked, and the form's command resumes.
    assert restarted.restored_form() == {**form, "resume": True}
    assert restarted.stop(output) == "No run is going on."
    assert TrainingWorkspace(workspace.root).restored_form()["resume"] is True
    # A run that finished leaves nothing to resume.
    (output / "final").mkdir()
    assert TrainingWorkspace(workspace.root).restored_form()["resume"] is False


def test_a_page_that_opens_lists_the_config_files_added_since(workspace, model, store):
    from studio.ui import create_demo

    demo = create_demo(model, store, training=workspace)
    (workspace.root / "configs" / "mine.yaml").write_text("max_train_steps: 3\n")
    (restore_form,) = [fn.fn for fn in demo.fns.values() if fn.name == "restore_form"]
    config = restore_form()[0]
    assert config.choices == [("configs/mine.yaml", "configs/mine.yaml"), ("configs/tiny.yaml", "configs/tiny.yaml")]


def test_the_log_box_shows_the_newest_lines(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "console.log").write_text("".join(f"step {i}/30\n" for i in range(1, 31)))
    assert TrainingWorkspace.log_tail(tmp_path).splitlines() == [f"step {i}/30" for i in range(17, 31)]
