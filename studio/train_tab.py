# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""The Train tab: a form over `python -m higen_core.train`, run as a subprocess inside a workspace folder.

Only with `python app.py --enable-training` (never on a Space or with --share: it starts programs on the server).
Everything it reads or writes is under the workspace; a path that resolves elsewhere (symlinks followed) is refused.
The command is built from the trainer's typed fields: a scalar goes as the one argument `--field=value` and a list
item as one argument after its flag (an item may not start with "-"), so that no value is ever read as a flag.
The run is started in its own session, so it goes on when the tab or the browser closes; Stop sends it SIGTERM,
on which the trainer saves a checkpoint and exits.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pandas as pd

from . import StudioError, inputs
from .events import QUICK_EVENT, UI_EVENT, user_errors

REPO_ROOT = Path(__file__).resolve().parent.parent
# The trainer's fields the form shows; any other field goes in "More fields". Help and defaults come from the
# trainer itself, so the form cannot drift from it.
FORM_FIELDS = ("init_from", "lora_rank", "video_data", "image_data", "max_train_steps", "learning_rate",
               "batch_size", "num_frames", "height", "width", "checkpointing_steps", "sample_every",
               "mixed_precision", "use_ema", "seed")
# Fields naming files the trainer reads: each item must resolve inside the workspace.
PATH_FIELDS = {"video_data", "image_data", "video_shards", "image_shards"}
# Fields naming models: "tiny" (the seeded test components) or a file or folder inside the workspace.
MODEL_FIELDS = {"init_from", "vae", "text_encoder", "tokenizer", "appearance_model"}
# Not free fields: why each is refused there.
RESERVED_FIELDS = {
    "config": "the form's config file sets it",
    "output_dir": "the form's output folder sets it",
    "resume": "the form's resume box sets it",
    "cache_dir": "the latent cache stays in the output folder",
}
MAX_FIELD_CHARS = 4096
CONSOLE_LOG = "console.log"
LOG_TAIL_CHARS = 20_000
LOG_LINES = 14  # the log box's height, and the lines it shows
# The form of the last run started, kept in the workspace: a reopened page, even of a restarted studio, shows it.
LAST_RUN_FILE = ".studio-last-run.json"
SAMPLES_SHOWN = 8
LOSS_COLUMNS = {"step": "int64", "loss": "float64", "kind": "object"}


def trainer_fields() -> dict[str, object]:
    # Imported on first use: the package higen_core imports torch, which the UI's modules leave to studio.model.
    from higen_core.training.config import TrainConfig

    return {f.name: f for f in TrainConfig.__dataclass_fields__.values()}


def _is_list_field(name: str) -> bool:
    return str(trainer_fields()[name].type).startswith("list")


FieldValues = dict[str, "str | list[str]"]  # a list field's items, or a scalar field's one value


class TrainingWorkspace:
    """One training run at a time, under `root`. `trainer` is the command that starts the trainer (tests give a
    stand-in)."""

    def __init__(self, root: str | Path, trainer: list[str] | None = None):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.trainer = trainer or [sys.executable, "-m", "higen_core.train"]
        self.process: subprocess.Popen | None = None
        self.output_dir: Path | None = None
        self.stopped = False  # the run was sent SIGTERM (it saves a checkpoint and exits with 0)
        self.last_form: dict | None = self._read_last_form()  # the form of the last run started here

    # ------------------------------------------------------------------------------------------------------------
    # Paths
    def resolve(self, path: str | Path, what: str = "path", must_exist: bool = False) -> Path:
        """`path` (relative to the workspace, or absolute) with symlinks resolved; refused unless inside it."""
        text = inputs.text(str(path) if isinstance(path, Path) else path, f"The {what}", multiline=False)
        if not text:
            raise StudioError(f"Give the {what}.")
        resolved = (self.root / Path(text).expanduser()).resolve()
        if not resolved.is_relative_to(self.root):
            raise StudioError(f"The {what} {text} is outside the workspace {self.root}: refused.")
        if must_exist and not resolved.exists():
            raise StudioError(f"The {what} {text} does not exist in the workspace.")
        return resolved

    def config_files(self) -> list[str]:
        found = [p for pattern in ("*.yaml", "*.yml", "*.json") for p in self.root.rglob(pattern)
                 if "checkpoints" not in p.parts and p.resolve().is_relative_to(self.root)]
        return sorted(str(p.relative_to(self.root)) for p in found)

    # ------------------------------------------------------------------------------------------------------------
    # The command
    def parse_fields(self, form: dict[str, str], more: str) -> FieldValues:
        """The form's fields and the "name: value" lines of `more` -> {field: value}; blanks are left to the config
        file / defaults. A list field takes one item per line: the form's box has a line per item, and in `more`
        the field's line is repeated."""
        known = trainer_fields()
        values: FieldValues = {}

        def add(name: str, value: str, where: str) -> None:
            if name in RESERVED_FIELDS:
                raise StudioError(f"{name} is not a free field: {RESERVED_FIELDS[name]}.")
            if name not in known:
                raise StudioError(f"{name} is not a field of the trainer (python -m higen_core.train --help).")
            if _is_list_field(name):
                values.setdefault(name, []).append(value)
            elif name in values:
                raise StudioError(f"{name} is given twice ({where}): give it once.")
            else:
                values[name] = value

        for name, raw in form.items():
            text = inputs.text(raw, f"The field {name}", MAX_FIELD_CHARS)
            lines = text.splitlines()
            if len(lines) > 1 and not _is_list_field(name):
                raise StudioError(f"The field {name} takes one value, on one line.")
            for line in filter(None, (line.strip() for line in lines)):
                add(name, line, "in the form")
        for line in inputs.text(more, "More fields", 50 * MAX_FIELD_CHARS).splitlines():
            if not line.strip():
                continue
            name, sep, value = line.partition(":") if ":" in line else line.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or not re.fullmatch(r"[a-z_][a-z0-9_]*", name) or not value.strip():
                raise StudioError(f"“{line.strip()}”: write one field per line as name: value.")
            add(name, value.strip(), "in More fields")
        return values

    def _checked_value(self, name: str, value: str) -> str:
        """A field's value as the trainer gets it: a path field's item resolved inside the workspace, a model field's
        "tiny" or resolved path; any other value as it is."""
        if name in PATH_FIELDS:
            return str(self.resolve(value, what=name, must_exist=True))
        if name in MODEL_FIELDS:
            return value if value == "tiny" else str(self.resolve(value, what=name, must_exist=True))
        return value

    def build_command(self, config: str, output_dir: str, fields: FieldValues, resume: bool) -> list[str]:
        """The exact argument list started (never a shell string)."""
        command = [*self.trainer]
        config = inputs.text(config, "The config file", multiline=False)
        if config:
            command.append(f"--config={self.resolve(config, 'config file', must_exist=True)}")
        command.append(f"--output-dir={self.resolve(output_dir, 'output folder')}")
        for name, value in fields.items():
            flag = f"--{name.replace('_', '-')}"
            if isinstance(value, list):
                items = [self._checked_value(name, item) for item in value]
                for item in items:
                    if item.startswith("-"):
                        raise StudioError(f"{name}: “{item}” starts with “-”, which the trainer would read as a "
                                          f"flag: reword it.")
                command += [flag, *items]
            else:
                command.append(f"{flag}={self._checked_value(name, value)}")
        if "progress_bar" not in fields:
            # The tab plots progress; in the log file a progress bar is a line for every refresh.
            command.append("--progress-bar=false")
        if inputs.flag(resume, "Resume"):
            command.append("--resume=latest")
        return command

    # ------------------------------------------------------------------------------------------------------------
    # The last run's form
    def _read_last_form(self) -> dict | None:
        try:
            form = json.loads((self.root / LAST_RUN_FILE).read_text())
        except (OSError, ValueError):
            return None
        return form if isinstance(form, dict) else None

    def remember_form(self, form: dict) -> None:
        """Keep the form of the run being started, in memory and in the workspace."""
        self.last_form = dict(form)
        (self.root / LAST_RUN_FILE).write_text(json.dumps(self.last_form, indent=1))

    def restored_form(self) -> dict | None:
        """The last run's form, for a page that opens: Resume ticked when that run stopped or failed with a
        checkpoint to go on from, unticked while it runs or once it finished. None: no run was started here."""
        if self.last_form is None:
            return None
        form = dict(self.last_form)
        try:
            folder = self.resolve(form.get("output_dir", ""), "output folder")
        except StudioError:
            return form
        running = self.running() or self.lock_holder(folder) is not None
        if self.process is not None:
            finished = self.process.poll() == 0 and not self.stopped
        else:  # a studio restarted since: what the run left tells
            finished = (folder / "final").is_dir() or (folder / "lora").is_dir()
        if running:  # the form as the run now going was started
            form["resume"] = bool(form.get("resume"))
        else:  # ticked where the run can go on
            form["resume"] = not finished and any(row[1] == "yes" for row in self.checkpoints(folder))
        return form

    @staticmethod
    def lock_holder(output_dir: Path) -> int | None:
        """The pid of the trainer running in `output_dir` now, started by this studio or by another (one that has
        restarted since), or None: the trainer's own lock says (higen_core.training.lock)."""
        from higen_core.training.lock import holder_pid  # imports torch, like trainer_fields

        return holder_pid(output_dir)

    # ------------------------------------------------------------------------------------------------------------
    # The run
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, command: list[str], output_dir: Path) -> int:
        if self.running():
            raise StudioError(f"A run is going on (pid {self.process.pid}): stop it first.")
        logs = output_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        # It runs in the workspace (relative paths in a config file mean the workspace's); the repo stays importable.
        python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": python_path}
        with open(logs / CONSOLE_LOG, "a") as console:
            # A session of its own: closing the tab, or Ctrl-C in the studio's terminal, does not end the run.
            self.process = subprocess.Popen(command, cwd=self.root, env=env, stdout=console,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        self.output_dir = output_dir
        self.stopped = False
        return self.process.pid

    def stop(self, output_dir: Path | None = None) -> str:
        """SIGTERM to the run: this studio's, or the one holding `output_dir`'s lock (started before a restart)."""
        if self.running():
            pid = self.process.pid
            # The trainer alone: it saves a checkpoint and stops its own data workers.
            self.process.send_signal(signal.SIGTERM)
        elif output_dir is not None and (pid := self.lock_holder(output_dir)) is not None:
            os.kill(pid, signal.SIGTERM)
        else:
            return "No run is going on."
        self.stopped = True
        return f"Sent SIGTERM to pid {pid}: it saves a checkpoint at the next step and exits."

    def status(self, output_dir: Path | None = None) -> str:
        if self.process is None:
            pid = self.lock_holder(output_dir) if output_dir is not None else None
            if pid is not None:
                return (f"Running: pid {pid}, output {output_dir.relative_to(self.root)} (started before this studio "
                        f"restarted; its log and losses show here, Stop works).")
            return "No run started from this studio yet."
        code = self.process.poll()
        where = f"{self.output_dir.relative_to(self.root)}" if self.output_dir else ""
        if code is None:
            return f"Running: pid {self.process.pid}, output {where}."
        if code != 0:
            return f"Failed with exit code {code}: the log below says why. Output {where}."
        if self.stopped:
            return f"Stopped at a checkpoint: tick “Resume” and start again to go on. Output {where}."
        return f"Finished: output {where}."

    # ------------------------------------------------------------------------------------------------------------
    # What a run leaves in its folder
    @staticmethod
    def log_tail(output_dir: Path, max_chars: int = LOG_TAIL_CHARS, lines: int = LOG_LINES) -> str:
        """The console log's last `lines` lines: as many as the box shows, so that the newest are always in view
        without scrolling (a box refreshed every few seconds would not stay scrolled down)."""
        path = output_dir / "logs" / CONSOLE_LOG
        if not path.is_file():
            return ""
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - max_chars))
            return "\n".join(f.read().decode("utf-8", errors="replace").splitlines()[-lines:])

    @staticmethod
    def loss_table(output_dir: Path) -> pd.DataFrame:
        rows = []
        path = output_dir / "logs" / "train_log.jsonl"
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    rows.append({"step": int(entry["step"]), "loss": float(entry["loss"]),
                                 "kind": str(entry.get("kind", "train"))})
                except (ValueError, KeyError, TypeError):
                    continue  # the line the trainer is writing right now, or not a step line
        # Typed even when empty: the plot takes its axes' kinds from the first table it gets, and an untyped empty
        # one makes step and loss categories.
        return pd.DataFrame(rows, columns=["step", "loss", "kind"]).astype(LOSS_COLUMNS)

    @staticmethod
    def samples(output_dir: Path, count: int = SAMPLES_SHOWN) -> list[tuple[str, str]]:
        """The newest sample videos the trainer wrote (samples/step-<step>-<i>.mp4), newest first, with captions."""
        folder = output_dir / "samples"
        videos = sorted(folder.glob("step-*-*.mp4"), reverse=True)[:count] if folder.is_dir() else []
        captions = []
        for video in videos:
            _, step, index = video.stem.split("-")
            captions.append(f"step {int(step)} · sample {index}")
        return [(str(video), caption) for video, caption in zip(videos, captions)]

    @staticmethod
    def checkpoints(output_dir: Path) -> list[list]:
        folder = output_dir / "checkpoints"
        if not folder.is_dir():
            return []
        return [[p.name, "yes" if (p / "complete").exists() else "no (being written or cut short)"]
                for p in sorted(folder.glob("step-*"))]


def build_train_tab(workspace: TrainingWorkspace, demo: gr.Blocks) -> None:
    """The tab's components and events, inside the caller's Blocks (`demo`) and Tab."""
    known = trainer_fields()
    gr.Markdown(f"Runs `python -m higen_core.train` on this machine, inside the workspace `{workspace.root}`. "
                f"Paths are relative to it; anything outside is refused. The run goes on if you close this page.")
    with gr.Row():
        config = gr.Dropdown(workspace.config_files(), label="Config file (YAML or JSON, optional)",
                             allow_custom_value=True, value=None, elem_id="train-config")
        output_dir = gr.Textbox("runs/studio", label="Output folder", elem_id="train-output")
        resume = gr.Checkbox(False, label="Resume from the latest checkpoint", elem_id="train-resume")
    form = {}
    with gr.Accordion("Fields (blank: the config file's value or the trainer's default)", open=True):
        with gr.Row():
            for name in FORM_FIELDS:
                f = known[name]
                default = f.default_factory() if callable(f.default_factory) else f.default
                listed = _is_list_field(name)
                form[name] = gr.Textbox(label=f"{name} (one per line)" if listed else name, lines=2 if listed else 1,
                                        placeholder=f"default: {default!r}", info=f.metadata["help"],
                                        min_width=220, elem_id=f"train-field-{name}")
        more = gr.Textbox(label="More fields, one per line as name: value (a list field: its line once per item)",
                          lines=3, elem_id="train-more")
    command_view = gr.Code(label="Command", language="shell", interactive=False, elem_id="train-command")
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop (SIGTERM)", variant="stop", elem_id="train-stop")
    status = gr.Markdown(workspace.status(), elem_id="train-status")
    with gr.Row(equal_height=False):
        # One line, image and video steps alike: Gradio's LinePlot draws no line when its updates are split by a
        # colour column (seen with gradio 6.31); the table keeps each step's kind.
        loss = gr.LinePlot(x="step", y="loss", title="Loss", height=300, elem_id="train-loss")
        checkpoints = gr.Dataframe(headers=["checkpoint", "complete"], label="Checkpoints", interactive=False,
                                   elem_id="train-checkpoints")
    samples = gr.Gallery(label="Sample videos (sample_every), newest first", columns=4, height=260,
                         allow_preview=True, interactive=False, elem_id="train-samples")
    log = gr.Textbox(label=f"Log: its newest lines (all of them: logs/{CONSOLE_LOG} in the output folder)",
                     lines=LOG_LINES, max_lines=LOG_LINES, interactive=False, elem_id="train-log")
    timer = gr.Timer(2.0)

    controls = [config, output_dir, resume, more, *form.values()]
    control_names = ["config", "output_dir", "resume", "more", *form]

    def command_from(config_value, output_value, resume_value, more_value, *field_values):
        fields = workspace.parse_fields(dict(zip(form, field_values)), more_value)
        return workspace.build_command(config_value, output_value, fields, resume_value)

    @user_errors
    def show_command(*values):
        try:
            return shlex.join(command_from(*values))
        except StudioError as e:
            return f"# {e}"

    @user_errors
    def start_run(*values):
        command = command_from(*values)
        folder = workspace.resolve(values[1], "output folder")
        pid = workspace.start(command, folder)
        workspace.remember_form(dict(zip(control_names, values)))
        gr.Info(f"Training started (pid {pid}).")
        return workspace.status(folder)

    @user_errors
    def stop_run(output_value):
        folder = workspace.resolve(output_value, "output folder")
        message = workspace.stop(folder)
        gr.Info(message)
        return workspace.status(folder)

    @user_errors
    def refresh(output_value):
        try:
            folder = workspace.resolve(output_value, "output folder")
        except StudioError as e:
            return str(e), pd.DataFrame(columns=list(LOSS_COLUMNS)).astype(LOSS_COLUMNS), [], "", []
        return workspace.status(folder), workspace.loss_table(folder), workspace.checkpoints(folder), \
            workspace.log_tail(folder), workspace.samples(folder)

    @user_errors
    def restore_form():
        """A page that opens shows the last run's form (Resume ticked where it can go on), or keeps its defaults;
        its config files are listed again (one may have been added to the workspace since)."""
        form_values = workspace.restored_form() or {}
        values = [form_values.get(name, gr.skip()) for name in control_names]
        values[0] = gr.Dropdown(choices=workspace.config_files(), value=form_values.get("config", None))
        return values

    command_view.value = show_command(None, output_dir.value, False, "", *[""] * len(form))
    gr.on([c.change for c in controls], show_command, controls, command_view, **QUICK_EVENT)
    start.click(start_run, controls, status, **UI_EVENT)
    stop.click(stop_run, [output_dir], status, **UI_EVENT)
    timer.tick(refresh, [output_dir], [status, loss, checkpoints, log, samples], **QUICK_EVENT)
    demo.load(restore_form, None, controls, **QUICK_EVENT)
