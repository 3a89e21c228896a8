"""`python app.py`: the model it runs by default, its options, and its refusals, which come before anything loads,
with one clear line and exit code 2."""

from pathlib import Path

import pytest

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
