"""What a person installing the project relies on: requirements.txt and pyproject.toml agree, the wheel carries the
configs, and the core library imports none of the shapes demo world."""

import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")

REPO = Path(__file__).resolve().parents[1]
TEST_TOOLS = {"pytest", "playwright"}


def _requirements(lines) -> set[str]:
    return {str(Requirement(line)) for line in lines}


def test_requirements_txt_is_pyprojects_library_and_extras():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = _requirements(project["dependencies"]) | {
        requirement for name, lines in extras.items() if name != "dev" for requirement in _requirements(lines)}
    listed = _requirements(line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
                           if line.strip() and not line.startswith("#"))
    assert listed == declared
    # dev is every other extra plus the test tools
    dev = {Requirement(line).name for line in extras["dev"]}
    assert dev == {project["name"]} | TEST_TOOLS


def test_the_wheel_carries_the_packages_and_their_configs(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True)
    import zipfile

    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("higen_core/pipeline_higen.py", "higen_core/configs/train-tiny.yaml", "studio/ui.py",
                   "higen_core/shapes/configs/train-shapes.yaml", "higen_core/shapes/configs/shapes-unet.json"):
        assert needed in names
    assert not [name for name in names if name.startswith(("tests/", "assets/"))]


def test_the_core_imports_none_of_the_shapes_world():
    code = ("import sys, higen_core, higen_core.pipeline_higen, higen_core.unet_higen, higen_core.train, "
            "higen_core.evaluate, higen_core.generate, studio.model\n"
            "print(sorted(m for m in sys.modules if m.startswith('higen_core.shapes')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
