"""The README is the user's one page: at most about 200 lines, and every example on the bundled demo model runs
exactly as written (from a folder that holds the repository's assets, as the README's examples assume)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
BUNDLED = "assets/shapes-model"
# A block preceded by this comment is a long measurement: its command is checked to parse, not run.
NOT_RUN = "<!-- not run by the tests"


def blocks(language: str) -> list[tuple[str, bool]]:
    """(code, run it?) of the README's fenced blocks in `language` that use the bundled model."""
    found = []
    for match in re.finditer(rf"(<!--[^\n]*-->\n)?```{language}\n(.*?)```", README, flags=re.S):
        comment, code = match.group(1) or "", match.group(2)
        if BUNDLED in code:
            found.append((code, not comment.startswith(NOT_RUN)))
    return found


def commands(code: str) -> list[list[str]]:
    """A bash block's commands (continuation lines joined), as argument lists."""
    joined = code.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if shlex.split(line, comments=True)]


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "assets").symlink_to(REPO / "assets")
    return tmp_path


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_readme_is_one_page():
    assert len(README.splitlines()) <= 210


def test_python_examples_run_as_written(workdir):
    (code, _), = blocks("python")
    result = run([sys.executable, "-c", code], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["3.0", "(0.0,", "20.0)"]
    for name in ("prior.png", "left.mp4", "right.mp4", "grows.mp4"):
        assert (workdir / name).stat().st_size > 0


def test_command_line_examples_run_as_written(workdir):
    ran = 0
    for code, runnable in blocks("bash"):
        for argv in commands(code):
            assert argv[:2] == ["python", "-m"], argv
            if runnable:
                result = run([sys.executable, *argv[1:]], workdir)
                assert result.returncode == 0, (argv, result.stderr[-3000:])
                assert "Warning" not in result.stderr, result.stderr[-3000:]  # e.g. γm outside the trained range
                ran += 1
            else:  # a long measurement: its arguments must still be the command's
                from higen_core.evaluate import build_parser

                assert argv[2] == "higen_core.evaluate"
                build_parser().parse_args(argv[3:])
    assert ran >= 2
    for name in ("left_prior.png", "left.mp4", "left.json", "triangle_0.mp4", "triangle_1.mp4"):
        assert (workdir / name).stat().st_size > 0
