"""Fixtures of the studio's tests: the tiny model (about a second a job on a CPU), session stores in tmp folders, and
the app launched in-process on 127.0.0.1."""

import socket
from types import SimpleNamespace

import pytest

from studio.model import StudioModel
from studio.sessions import SessionStore


@pytest.fixture(scope="session")
def model() -> StudioModel:
    return StudioModel.load("tiny")


@pytest.fixture
def store(tmp_path):
    store = SessionStore(tmp_path / "sessions")
    yield store
    store.close()


@pytest.fixture
def session(store):
    return store.ensure(None)


def serve_studio(model, store, **options):
    """The studio launched in-process on a free port of 127.0.0.1, without blocking."""
    from studio.ui import CSS, create_demo

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = create_demo(model, store, **options)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, css=CSS)
    return demo


@pytest.fixture(scope="session")
def serve():
    return serve_studio


@pytest.fixture(scope="module")
def app(model, tmp_path_factory):
    """The whole studio, served for the module's tests."""
    store = SessionStore(tmp_path_factory.mktemp("app-sessions"))
    demo = serve_studio(model, store)
    yield SimpleNamespace(url=demo.local_url, demo=demo, store=store)
    demo.close()
    store.close()
