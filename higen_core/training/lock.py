# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""One run at a time in an output folder.

Two runs writing into one folder would interleave their log lines, overwrite each other's checkpoints and delete
each other's half-written saves, and both would report success. So a run holds `OUTPUT_DIR/run.lock` while it works:
an exclusive `flock` of the main process, whose file names the holder (pid, host, start time, command line). The
operating system drops a flock when its process ends, however it ends, `kill -9` included: a lock file left behind by
a killed run is not locked, and the next run takes it over. A second run into a folder in use is refused at once,
before any model loads.

flock locks are advisory, and work on local file systems (and on those network file systems that support them); two
machines sharing a folder over one that does not are not kept apart.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from accelerate import PartialState
from accelerate.utils import broadcast_object_list

from .config import ConfigError

LOCK_FILE = "run.lock"

logger = logging.getLogger("higen_core.train")  # only the main process takes the lock

# File descriptors of the locks this process holds.
_HELD: set[int] = set()


def _close_inherited_locks() -> None:
    # A forked child (a DataLoader worker) shares the lock's open file description, which would keep the lock held
    # after the run itself dies, until the child notices. Closing the child's copy (never unlocking: that would
    # release the parent's lock too) ties the lock to the run's own process.
    for fd in _HELD:
        os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


def _holder(path: Path) -> str:
    """The holder a lock file names, in words."""
    try:
        info = json.loads(path.read_text())
        return (f"pid {info['pid']} on {info['host']} since {info['started']} "
                f"(command: {info['command']})")
    except (OSError, ValueError, KeyError, TypeError):  # being written at this moment, or not ours
        return "another run"


def holder_pid(output_dir: str | os.PathLike) -> int | None:
    """The pid of the run holding OUTPUT_DIR's lock now, or None when no run holds it (a file left by a killed run
    is not locked). For a watcher, such as the studio's Train tab after a restart; it never takes the lock."""
    path = Path(output_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            return int(json.loads(path.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):  # being written at this moment
            return None
    finally:
        os.close(fd)  # also drops the probe's own flock, if it got one
    return None


class OutputLock:
    """The exclusive lock of an output folder, held by this process until `release` or its end."""

    def __init__(self, fd: int, path: Path):
        self.fd, self.path = fd, path

    @classmethod
    def take(cls, output_dir: str | os.PathLike) -> OutputLock:
        """Create the folder if need be and lock it, or raise ConfigError (field output_dir) naming the holder, or
        saying why the folder cannot be created or written."""
        folder = Path(output_dir)
        path = folder / LOCK_FILE
        while True:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise ConfigError("output_dir", f"cannot create or write {folder}: {error.strerror}.") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ConfigError("output_dir", f"{folder} is in use by {_holder(path)}: wait for it, stop it, or "
                                  f"choose another --output-dir.") from None
            # The holder removes the file as it releases the lock: if that happened between our open and our flock,
            # we locked a file no other run can see any more. Start again on the file that is there now.
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        previous = os.read(fd, 4096)
        if previous:
            logger.warning(f"{path} was left by a run that ended without releasing it (killed?): "
                           f"{previous.decode(errors='replace').strip()}; taking it over.")
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        _HELD.add(fd)
        return cls(fd, path)

    def release(self) -> None:
        """Remove the lock file, then unlock: a run that opens the path from now on gets a new file."""
        if self.fd not in _HELD:
            return
        self.path.unlink(missing_ok=True)
        _HELD.discard(self.fd)
        os.close(self.fd)  # closing the last descriptor of the file drops the flock


@contextmanager
def output_dir_lock(output_dir: str | os.PathLike) -> Iterator[None]:
    """Hold OUTPUT_DIR's lock for the duration of the block. Under several processes the main one holds it and the
    others learn its outcome, so that all of them refuse a folder in use, before any of them loads a model."""
    state = PartialState()
    lock, refusal = None, None
    if state.is_main_process:
        try:
            lock = OutputLock.take(output_dir)
        except ConfigError as error:
            refusal = (error.field, error.message)
    if state.num_processes > 1:
        refusal = broadcast_object_list([refusal])[0]
    if refusal is not None:
        raise ConfigError(*refusal)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()
