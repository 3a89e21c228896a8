"""What the studio's handlers show when they fail (studio.events.user_errors)."""

import logging

import gradio as gr
import pytest

from studio import StudioError
from studio.events import SERVER_FAULT, user_errors


def test_a_persons_mistake_is_shown_as_written():
    @user_errors
    def handler():
        raise StudioError("Enter a prompt for the spatial prior.")

    with pytest.raises(gr.Error, match="Enter a prompt for the spatial prior."):
        handler()


def test_a_server_fault_reveals_nothing_and_is_logged(caplog):
    @user_errors
    def handler():
        raise FileNotFoundError("/srv/private/models/weights.safetensors")

    with caplog.at_level(logging.ERROR, logger="studio"), pytest.raises(gr.Error) as raised:
        handler()
    assert raised.value.message == SERVER_FAULT and "/srv" not in SERVER_FAULT
    assert "/srv/private/models/weights.safetensors" in caplog.text
