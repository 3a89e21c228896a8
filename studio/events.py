# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""What every tab's events share: their queue settings and the wrapper that shows a `StudioError` to the person at
the keyboard. Torch-free, and free of the tabs themselves, so that each tab imports it without importing another."""

from __future__ import annotations

import functools
import logging

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
# What a person sees when a handler fails for a reason of the server's own: nothing of the server's insides.
SERVER_FAULT = "The studio could not do that (the server's log has the details). Try again, or reload the page."
# What a caller gets when Gradio itself refuses a request's values, before any handler sees them.
MALFORMED_REQUEST = ("This request does not fit the endpoint: it takes {count} values, each as /gradio_api/info "
                     "describes it; a file must be one uploaded to this server (gradio_client's handle_file does "
                     "that).")

log = logging.getLogger("studio")


class StudioBlocks(gr.Blocks):
    """Blocks whose refusals of a malformed request say what the endpoint takes.

    Gradio checks a request's values itself before a handler runs (their number; a file payload must be an upload
    of this server, of the right shape, not a URL of a private host; a select event must carry what was selected)
    and answers a failed check with a bare "Error". Its own text would echo the caller's values, which may not even
    be encodable (a lone surrogate breaks the event stream), so the caller gets `MALFORMED_REQUEST` instead and the
    server's log the reason. Every handler catches its own failures (`user_errors`), so what reaches these two
    methods from below is Gradio's refusal of the request."""

    cached_examples: list  # the page's cached gr.Examples (studio.ui.create_demo sets it), to make ahead of a click

    async def preprocess_data(self, block_fn, *args, **kwargs):
        return await self._refusing(block_fn, super().preprocess_data(block_fn, *args, **kwargs))

    async def call_function(self, block_fn, *args, **kwargs):
        return await self._refusing(block_fn, super().call_function(block_fn, *args, **kwargs))

    async def _refusing(self, block_fn, step):
        """Await Gradio's `step` of a request; any failure but a gr.Error becomes `MALFORMED_REQUEST`."""
        try:
            return await step
        except gr.Error:
            raise
        except Exception as error:
            block_fn = self.fns[block_fn] if isinstance(block_fn, int) else block_fn
            log.info("refused a request to %s: %s", block_fn.name, type(error).__name__)
            raise gr.Error(MALFORMED_REQUEST.format(count=len(block_fn.inputs)), print_exception=False) from None


def session_endpoint(fn):
    """Marks a handler whose public endpoint acts on the caller's session (a prior made by one call is animated by
    the next): for gradio_client, whose calls share one, but not an MCP tool, since an MCP agent's calls share none
    and it could only fail there. Gradio lists every public endpoint as an MCP tool except those that its gr.mcp
    decorators mark as another kind (a resource, a prompt); this mark names no kind at all."""
    fn._mcp_type = "session endpoint"
    return fn


def user_errors(fn):
    """Handlers raise StudioError with text meant for the person at the keyboard: show it as a Gradio error, without
    a traceback in the server's log (it is the person's mistake, not the server's). A job stopped on request changes
    nothing on the page: Stop itself says so, calmly. Any other failure is the server's: its traceback goes to the
    log and the person gets `SERVER_FAULT`, since its text could tell a caller about the server's files."""

    @functools.wraps(fn)  # Gradio reads the signature (gr.Progress, gr.SelectData, gr.Request) through this
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except JobStopped:
            return gr.skip()
        except StudioError as e:
            raise gr.Error(str(e), print_exception=False) from None
        except gr.Error:
            raise
        except Exception:
            log.exception("%s failed", fn.__name__)
            raise gr.Error(SERVER_FAULT, print_exception=False) from None

    return wrapper
