"""`python app.py`: its refusals come before anything loads, with one clear line and exit code 2."""

import pytest

import app


def test_a_bad_model_path_fails_fast(capsys, tmp_path):
    assert app.main(["--model", str(tmp_path / "no-such-model")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no-such-model: no such folder" in err
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
