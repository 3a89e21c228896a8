# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""What every tab's events share: their queue settings and the wrapper that shows a `StudioError` to the person at
the keyboard. Torch-free, and free of the tabs themselves, so that each tab imports it without importing another."""

from __future__ import annotations

import functools

import gradio as gr

from . import JobStopped, StudioError

# Every GPU event shares one concurrency id with a limit of 1: spatial reasoning, temporal reasoning, image encoding
# and model loading never overlap, whoever asked for them.
GPU_EVENT = {"concurrency_id": "gpu", "concurrency_limit": 1}
# Handlers that may show a message go through the queue, because only queued events bring gr.Error and gr.Info to the
# page; with no concurrency limit they never wait behind a GPU job.
UI_EVENT = {"concurrency_id": "ui", "concurrency_limit": None, "api_visibility": "private"}
# Handlers that only show data skip the queue: a finished result is shown, and Stop works, even when it is full.
QUICK_EVENT = {"queue": False, "api_visibility": "private"}


def user_errors(fn):
    """Handlers raise StudioError with text meant for the person at the keyboard: show it as a Gradio error, without
    a traceback in the server's log (it is the person's mistake, not the server's). A job stopped on request changes
    nothing on the page: Stop itself says so, calmly."""

    @functools.wraps(fn)  # Gradio reads the signature (gr.Progress, gr.SelectData, gr.Request) through this
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except JobStopped:
            return gr.skip()
        except StudioError as e:
            raise gr.Error(str(e), print_exception=False) from None

    return wrapper
