"""`python app.py`: the model it runs by default, its options, and its refusals, which come before anything loads,
with one clear line and exit code 2."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

import app


def test_with_no_model_named_it_runs_the_demo_model_beside_it(monkeypatch, tmp_path):
    monkeypatch.delenv("HIGEN_MODEL", raising=False)
    bundled = Path(app.__file__).resolve().parent / "assets" / "shapes-model"
    assert app.parse_args([]).model == str(bundled)
    monkeypatch.chdir(tmp_path)  # wherever it is started from
    assert app.parse_args([]).model == str(bundled)
    monkeypatch.setenv("HIGEN_MODEL", "owner/higen-t2v")  # a Space names its model this way
    assert app.parse_args([]).model == "owner/higen-t2v"
    monkeypatch.delenv("HIGEN_MODEL")
    monkeypatch.setattr(app, "DEMO_MODEL_DIR", tmp_path / "not-here")  # a checkout without assets/
    assert app.parse_args([]).model == "tiny"


def test_cpu_threads(capsys):
    assert app.parse_args(["--cpu-threads", "1"]).cpu_threads == 1
    assert app.parse_args([]).cpu_threads is None  # set_cpu_threads' default: one per two cores
    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit) as exit_info:
            app.parse_args(["--cpu-threads", bad])
        assert exit_info.value.code == 2 and "--cpu-threads" in capsys.readouterr().err


def test_a_bad_model_path_fails_fast(capsys, tmp_path):
    assert app.main(["--model", str(tmp_path / "no-such-model"), "--cpu-threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such folder: " in err and "no-such-model" in err
    assert app.main(["--model", str(tmp_path)]) == 2
    assert "no model_index.json" in capsys.readouterr().err


@pytest.mark.parametrize("argv, env", [(["--enable-training", "--share"], {}),
                                       (["--enable-training"], {"SPACE_ID": "someone/higen"})])
def test_training_is_refused_on_spaces_and_share_links(argv, env, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        app.parse_args(argv)
    assert exit_info.value.code == 2 and "refused" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_removes_the_outputs(tmp_path):
    """`kill PID` (what a process manager sends) ends the server as Ctrl-C does: its session root is removed."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    env = {**os.environ, "TMPDIR": str(temp), "GRADIO_TEMP_DIR": str(temp / "gradio"),
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(Path(app.__file__).resolve().parent)}
    for name in ("SPACE_ID", "GRADIO_SERVER_NAME", "HIGEN_MODEL"):
        env.pop(name, None)
    server = subprocess.Popen([sys.executable, app.__file__, "--model", "tiny", "--port", str(port),
                               "--cpu-threads", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.2)
        else:
            raise AssertionError("the server did not come up")
        (root,) = temp.glob("higen-studio-*")
        assert (root / "server.pid").read_text().split()[0] == str(server.pid)
        Client(f"http://127.0.0.1:{port}/", verbose=False).predict(
            "a ball", "", 1, False, 1, 1.0, 1, "", api_name="/generate_prior")
        assert list(temp.rglob("prior-*.png"))  # in the session's folder, and in Gradio's cache
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, server.stdout.read()
        assert not list(temp.glob("higen-studio-*")) and not list(temp.rglob("prior-*.png"))
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
