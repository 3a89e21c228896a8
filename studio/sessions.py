# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""Per-session state: each browser gets an id (kept in its localStorage), an output folder of its own, its priors,
its history and its stop flag. A page refresh finds the same session again; a session whose last page closed is
deleted, folder and all, after a grace period.

Outputs live only as long as the server: a store that made its own root folder removes it when it closes (app.py
closes it on Ctrl-C and SIGTERM, and at exit), and a new store removes the roots that servers killed outright left
behind (each root holds the pid of the server that made it).

Torch-free on purpose: a prior's latents are stored here as an opaque object that only studio.model touches.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A refresh unloads the old page and loads the new one within seconds; a closed tab is gone for good. Ten minutes
# tells the two apart with room for a slow reconnect.
UNLOAD_GRACE_S = 600
# API clients (gradio_client) never send an unload, so their sessions end after this long without a job.
MAX_IDLE_S = 24 * 3600
REAP_INTERVAL_S = 60
ROOT_PREFIX = "higen-studio-"
OWNER_FILE = "server.pid"  # "<pid> <host name>" of the server whose store made the root


def new_id() -> str:
    """Unguessable: a session id is the only key to a browser's outputs."""
    return secrets.token_hex(8)


class StopFlag:
    """A stop request kept as a file rather than a threading.Event: on ZeroGPU a job runs in a forked worker that
    gets its arguments pickled, and a file is seen the same from both processes."""

    def __init__(self, path: str | Path):
        self.path = str(path)

    def set(self) -> None:
        Path(self.path).touch()

    def clear(self) -> None:
        Path(self.path).unlink(missing_ok=True)

    def is_set(self) -> bool:
        return os.path.exists(self.path)


@dataclass(eq=False)  # records are compared by identity: a history holds each one once
class PriorRecord:
    """A spatial prior: its preview PNG, the settings that made it, and its latents (1, C, h, w) on the CPU."""

    id: str
    image_path: Path
    settings: dict
    latents: Any = field(repr=False)

    @property
    def prompt(self) -> str:
        return self.settings.get("prompt", "")


@dataclass(eq=False)
class VideoRecord:
    """One video of an animation batch and its files; `settings` is also embedded in the MP4 and written as JSON."""

    id: str
    prior_id: str
    mp4_path: Path
    gif_path: Path
    json_path: Path
    settings: dict

    @property
    def files(self) -> list[str]:
        return [str(self.mp4_path), str(self.gif_path), str(self.json_path)]

    @property
    def label(self) -> str:
        s = self.settings
        partial = s.get("partial")
        steps = (f"partial: stopped after {partial['steps_done']} of {s['num_inference_steps']} steps" if partial
                 else f"{s['num_inference_steps']} steps")
        return (f"“{s['motion_prompt']}” · γm {s['motion_factor']:g} · γa {s['appearance_factor']:g} · "
                f"{s['num_frames']} frames · {steps} · seed {s['seed']}")


@dataclass
class Session:
    id: str
    folder: Path
    stop: StopFlag
    priors: dict[str, PriorRecord] = field(default_factory=dict)
    candidates: list[str] = field(default_factory=list)  # ids of the last "Generate prior", in gallery order
    current_prior_id: str | None = None
    history: list[PriorRecord | VideoRecord] = field(default_factory=list)  # oldest first
    last_videos: list[VideoRecord] = field(default_factory=list)
    # Each step's "Randomize seed" as last run ("prior", "animate"), for a reopened page: the seed alone would not
    # say whether the next run reuses it.
    randomize_seed: dict[str, bool] = field(default_factory=dict)
    clients: set[str] = field(default_factory=set)  # open pages (Gradio session hashes) showing this session
    busy: bool = False  # a job of this session was accepted and has not ended or been stopped
    running: bool = False  # a job of this session is in its handler now (a stopped one until it has left)
    released_at: float | None = None  # when its last page closed
    last_seen: float = field(default_factory=time.time)

    @property
    def preview_folder(self) -> Path:
        """Where a running animation writes its live preview (studio.model.PreviewWriter); gone when it ends."""
        return self.folder / "preview"

    def latest_preview(self) -> tuple[str, int, int] | None:
        """(path, step, steps) of the running animation's newest preview, or None."""
        folder = self.preview_folder
        names = sorted(folder.glob("preview-*-of-*.mp4")) if folder.is_dir() else []
        if not names:
            return None
        _, step, _, total = names[-1].stem.split("-")
        return str(names[-1]), int(step), int(total)

    @property
    def current_prior(self) -> PriorRecord | None:
        return self.priors.get(self.current_prior_id) if self.current_prior_id else None

    def add_prior(self, prior: PriorRecord) -> None:
        self.priors[prior.id] = prior

    def make_current(self, prior_id: str, remember: bool = True) -> PriorRecord:
        """The prior that "Animate" uses from now on. It joins the history when a person chose it; the candidate
        made current by default joins only once it is animated."""
        prior = self.priors[prior_id]
        self.current_prior_id = prior_id
        if remember:
            self.remember(prior)
        return prior

    def remember(self, record: PriorRecord | VideoRecord) -> None:
        if record not in self.history:
            self.history.append(record)

    def add_videos(self, videos: list[VideoRecord]) -> None:
        self.last_videos = list(videos)
        self.history.extend(videos)

    def find(self, record_id: str) -> PriorRecord | VideoRecord | None:
        return next((item for item in self.history if item.id == record_id), None)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_roots(parent: str | Path) -> list[Path]:
    """Remove the store roots under `parent` whose server, on this host, is no longer running (it was killed before
    it could remove its root). Roots without an owner file, or made on another host sharing the folder, are left
    alone."""
    removed = []
    host = socket.gethostname()
    for root in Path(parent).glob(f"{ROOT_PREFIX}*"):
        try:
            pid_text, _, owner_host = (root / OWNER_FILE).read_text().partition(" ")
            pid = int(pid_text)
        except (OSError, ValueError):
            continue
        if owner_host.strip() == host and pid != os.getpid() and not _process_exists(pid):
            shutil.rmtree(root, ignore_errors=True)
            removed.append(root)
    return removed


class SessionStore:
    """All sessions of one server, each with a folder under `root`. Unless `root` is given, the store makes a fresh
    temp folder, after removing those of servers that were killed, and removes it when it closes or at exit."""

    def __init__(self, root: str | Path | None = None, unload_grace_s: float = UNLOAD_GRACE_S,
                 max_idle_s: float = MAX_IDLE_S):
        self.owns_root = root is None
        if root is None:
            remove_stale_roots(tempfile.gettempdir())
            root = tempfile.mkdtemp(prefix=ROOT_PREFIX)
            (Path(root) / OWNER_FILE).write_text(f"{os.getpid()} {socket.gethostname()}")
            atexit.register(shutil.rmtree, root, ignore_errors=True)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.unload_grace_s = unload_grace_s
        self.max_idle_s = max_idle_s
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._reaper: threading.Thread | None = None
        self._closed = threading.Event()

    def __len__(self) -> int:
        return len(self._sessions)

    def _create(self) -> Session:
        sid = new_id()
        folder = self.root / sid
        folder.mkdir(mode=0o700)
        session = Session(id=sid, folder=folder, stop=StopFlag(folder / ".stop"))
        self._sessions[sid] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        with self._lock:
            session = self._sessions.get(sid) if isinstance(sid, str) else None
            if session is not None:
                session.last_seen = time.time()
            return session

    def ensure(self, sid: str | None) -> Session:
        """The session `sid`, or a new one when it is unknown (first visit, API client, or the server restarted)."""
        with self._lock:
            session = self._sessions.get(sid) if isinstance(sid, str) else None
            if session is None:
                session = self._create()
            session.last_seen = time.time()
            return session

    def attach(self, sid: str | None, client: str) -> Session:
        """A page (Gradio session hash `client`) opened with the id from its browser storage."""
        session = self.ensure(sid)
        with self._lock:
            session.clients.add(client)
            session.released_at = None
        return session

    def detach(self, client: str) -> None:
        """A page closed or refreshed: its session is deleted later unless a page attaches to it again."""
        with self._lock:
            for session in self._sessions.values():
                if client in session.clients:
                    session.clients.discard(client)
                    if not session.clients:
                        session.released_at = time.time()

    def delete(self, sid: str) -> None:
        with self._lock:
            session = self._sessions.pop(sid, None)
        if session is not None:
            session.stop.set()  # a job still running for it stops at its next step
            shutil.rmtree(session.folder, ignore_errors=True)

    def reap(self, now: float | None = None) -> list[str]:
        """Delete the sessions whose pages closed more than the grace period ago, and those idle for too long."""
        now = time.time() if now is None else now
        with self._lock:
            expired = [
                s.id for s in self._sessions.values()
                if (s.released_at is not None and now - s.released_at > self.unload_grace_s)
                or now - s.last_seen > self.max_idle_s
            ]
        for sid in expired:
            self.delete(sid)
        return expired

    def start_reaper(self, interval_s: float = REAP_INTERVAL_S) -> None:
        if self._reaper is not None:
            return

        def loop():
            while not self._closed.wait(interval_s):
                self.reap()

        self._reaper = threading.Thread(target=loop, name="higen-studio-session-reaper", daemon=True)
        self._reaper.start()

    def close(self) -> None:
        """Stop the reaper and delete every session, and the root if the store made it (the server is shutting
        down)."""
        self._closed.set()
        for sid in list(self._sessions):
            self.delete(sid)
        if self.owns_root:
            shutil.rmtree(self.root, ignore_errors=True)
