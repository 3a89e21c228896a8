# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""Atomic training checkpoints.

A checkpoint is written into `OUTPUT_DIR/checkpoints/tmp-step-XXXXXX` (accelerate's `save_state`: model, optimizer,
LR scheduler, grad scaler, every process's RNG states, registered objects such as the EMA), then gets
`training_state.json` (step, data position, config) and a `complete` marker, and only then is renamed to
`step-XXXXXX`. A run killed at any moment leaves either no new checkpoint or a complete one; resuming only ever
looks at complete ones, and old checkpoints are deleted only after the new one is complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from accelerate import Accelerator

from .config import ConfigError

COMPLETE_MARKER = "complete"
STATE_FILE = "training_state.json"
_NAME = re.compile(r"^step-(\d+)$")


def checkpoints_root(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / "checkpoints"


def is_complete(path: str | os.PathLike) -> bool:
    return (Path(path) / COMPLETE_MARKER).is_file() and (Path(path) / STATE_FILE).is_file()


def complete_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoints_root(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and is_complete(p)]
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    found = complete_checkpoints(output_dir)
    return found[-1] if found else None


def resolve_resume(resume: str | None, output_dir: str | os.PathLike) -> Path | None:
    """The checkpoint to resume from: None for a fresh run; 'latest' is None when the run has none yet (so that the
    same command starts a run and continues it after a preemption)."""
    if resume is None:
        return None
    if resume == "latest":
        return latest_checkpoint(output_dir)
    if not is_complete(resume):
        raise ConfigError("resume", f"{resume} is not a complete checkpoint (no '{COMPLETE_MARKER}' marker or "
                          f"{STATE_FILE}): it was interrupted while being written. Use 'latest' or an older one.")
    return Path(resume)


def read_state(checkpoint: str | os.PathLike) -> dict:
    return json.loads((Path(checkpoint) / STATE_FILE).read_text())


def _write_durably(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(accelerator: Accelerator, output_dir: str | os.PathLike, step: int, state: dict,
                    keep: int) -> Path:
    """Save everything needed to resume at `step`; every process must call it. `state` (JSON-able: step, data
    positions, config) goes into training_state.json. Keeps the newest `keep` complete checkpoints."""
    root = checkpoints_root(output_dir)
    tmp, final = root / f"tmp-step-{step:06d}", root / f"step-{step:06d}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        # Leftovers of interrupted saves are never complete: remove them before writing.
        for leftover in root.glob("tmp-step-*"):
            shutil.rmtree(leftover)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()  # every process's files (RNG states, shards) are in tmp
    if accelerator.is_main_process:
        _write_durably(tmp / STATE_FILE, json.dumps(state, indent=2, sort_keys=True))
        _write_durably(tmp / COMPLETE_MARKER, f"step {step}\n")
        if final.exists():  # the same step saved again (e.g. stopped right after a periodic save): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        for old in complete_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final
