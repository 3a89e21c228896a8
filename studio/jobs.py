# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""The studio's queue of jobs: work a person lines up to run one after another while they do something else.

A job is a plain callable (the UI builds it from the values checked when the job was added: "Add to queue" takes a
snapshot, so later edits of the page do not change it) and runs on one worker thread, in the order jobs were added,
whoever added them. Each result lands where the job's own handler puts it (the session's history); the queue keeps
only each job's state for the page to show. Torch-free: the model's own lock keeps a queued job and a job started
from the page from running at once.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from . import JobStopped, StudioError

log = logging.getLogger("studio")
MAX_WAITING_PER_SESSION = 8  # a person's own line; the server's whole queue is bounded by sessions x this
STATES = ("waiting", "running", "done", "stopped", "failed", "cancelled")


@dataclass(eq=False)
class Job:
    number: int  # shown to the person: 1, 2, 3 ... for the whole server
    session_id: str
    label: str  # what it makes, in words
    run: Callable[[], str] = field(repr=False)  # returns a short result note ("2 videos")
    state: str = "waiting"
    note: str = ""


class JobQueue:
    """One worker thread (a daemon, started by the first job); `submit` adds a job, `cancel` drops one that waits,
    `of_session` lists a session's."""

    def __init__(self):
        self._jobs: list[Job] = []
        self._numbers = itertools.count(1)
        self._changed = threading.Condition()
        self._worker: threading.Thread | None = None  # started by the first job

    def submit(self, session_id: str, label: str, run: Callable[[], str]) -> Job:
        with self._changed:
            waiting = sum(j.session_id == session_id and j.state == "waiting" for j in self._jobs)
            if waiting >= MAX_WAITING_PER_SESSION:
                raise StudioError(f"{waiting} of your jobs are already waiting, the most the queue keeps for one "
                                  f"person: wait for one to start, or cancel one.")
            job = Job(next(self._numbers), session_id, label, run)
            self._jobs.append(job)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="studio-jobs", daemon=True)
                self._worker.start()
            self._changed.notify_all()
            return job

    def cancel(self, session_id: str, number) -> Job:
        """Drop a waiting job of this session; a running one is stopped with the page's Stop button."""
        with self._changed:
            job = next((j for j in self._jobs if j.session_id == session_id and j.number == number), None)
            if job is None:
                raise StudioError(f"You have no job #{number} in the queue.")
            if job.state != "waiting":
                raise StudioError(f"Job #{number} is {job.state}: only a waiting job can be cancelled "
                                  f"(Stop stops a running one).")
            job.state = "cancelled"
            return job

    def of_session(self, session_id: str) -> list[Job]:
        with self._changed:
            return [j for j in self._jobs if j.session_id == session_id]

    def _next(self) -> Job:
        """The oldest waiting job, marked running; waits for one."""
        with self._changed:
            while True:
                job = next((j for j in self._jobs if j.state == "waiting"), None)
                if job is not None:
                    job.state = "running"
                    return job
                self._changed.wait()

    def _work(self) -> None:
        while True:
            job = self._next()
            try:
                note, state = job.run(), "done"
            except JobStopped:
                note, state = "stopped", "stopped"
            except StudioError as e:
                note, state = str(e), "failed"
            except Exception:
                log.exception("queued job #%d failed", job.number)
                note, state = "the server's log has the details", "failed"
            with self._changed:
                job.state, job.note = state, note
