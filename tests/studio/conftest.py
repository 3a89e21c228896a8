"""Fixtures of the studio's tests: the tiny model (about a second a job on a CPU), the bundled demo model, session
stores in tmp folders, and the app launched in-process on 127.0.0.1."""

import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from higen_core import HiGenPipeline
from higen_core.testing import tiny_components
from studio.model import StudioModel
from studio.sessions import SessionStore

REPO = Path(__file__).resolve().parents[2]
# The shapes-world model committed with the repository, with its recommended settings in its model_index.json.
DEMO_MODEL_DIR = REPO / "assets" / "shapes-model"
# What a model folder may recommend, away from every default the studio or the pipeline would use otherwise.
RECOMMENDED = {
    "motion_factor": 30, "motion_factor_range": [10, 60], "appearance_factor": 0.4, "guidance_scale": 4.5,
    "num_inference_steps": 3, "fps": 12,
    "example_prompts": ["a kite over a hill", "a boat on a lake"],
    "motion_examples": [
        {"label": "flies left, then up (γm 40)", "motion_prompts": ["a kite flies left", "a kite flies up"],
         "motion_factor": 40},
        {"label": "hangs still (γm 10)", "motion_prompts": ["a kite hangs still"], "motion_factor": 10},
    ],
}


@pytest.fixture(scope="session")
def model() -> StudioModel:
    return StudioModel.load("tiny")


@pytest.fixture(scope="session")
def recommending_model() -> StudioModel:
    """The tiny model with the `RECOMMENDED` settings, as a folder's model_index.json would give them."""
    return StudioModel(HiGenPipeline(**tiny_components(), settings=RECOMMENDED), "recommending")


@pytest.fixture(scope="session")
def demo_model_dir() -> Path:
    return DEMO_MODEL_DIR


@pytest.fixture(scope="session")
def shapes_model() -> StudioModel:
    return StudioModel.load(str(DEMO_MODEL_DIR))


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
    from studio.ui import LAUNCH_OPTIONS, create_demo

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = create_demo(model, store, **options)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **LAUNCH_OPTIONS)
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


def raw_call(url: str, fn_index: int, data: list, timeout: float = 60) -> dict:
    """What any HTTP client can do, with no Gradio client in between: join the queue for the event `fn_index` with
    `data` as raw JSON (NaN included), then read the event stream until it completes. Returns the last message:
    {"msg": "process_completed", "success": ..., "output": {...}}, or {"msg": "refused", ...} when the join itself
    is refused."""
    import json
    import uuid

    import httpx

    session_hash = uuid.uuid4().hex[:12]
    body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": session_hash, "event_data": None,
                       "trigger_id": None})
    with httpx.Client(base_url=url, timeout=timeout) as http:
        joined = http.post("gradio_api/queue/join", content=body, headers={"content-type": "application/json"})
        if joined.status_code != 200:
            return {"msg": "refused", "status": joined.status_code, "detail": joined.text}
        with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session_hash}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    message = json.loads(line[len("data:"):])
                    if message.get("msg") == "process_completed":
                        return message
    raise AssertionError(f"event {fn_index} never completed")


@pytest.fixture(scope="session")
def raw():
    return raw_call
