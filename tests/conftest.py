"""Shared fixtures: the official reference data (tests/reference, see its README), tiny components and one-shape
scenes of the shapes world."""

import json
import os
from pathlib import Path

import pytest
import torch

from higen_core.shapes.world import Scene, SceneObject

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("HIGEN_REFERENCE", REPO / "tests" / "reference" / "higen-official-tiny"))


@pytest.fixture(autouse=True)
def _seeded():
    # The test models are tiny: a second thread only adds synchronisation (10x slower on a busy 2-core machine).
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def reference() -> Path:
    if not (REFERENCE / "meta.json").is_file():
        pytest.fail(f"The official reference data is missing at {REFERENCE}: it ships in tests/reference (restore it "
                    f"with git checkout), or set HIGEN_REFERENCE to another copy.")
    return REFERENCE


@pytest.fixture(scope="session")
def reference_meta(reference) -> dict:
    return json.loads((reference / "meta.json").read_text())


@pytest.fixture(scope="session")
def reference_cases(reference) -> dict:
    from safetensors.torch import load_file

    return load_file(reference / "cases.safetensors")


@pytest.fixture(scope="session")
def reference_unet(reference, reference_meta):
    from higen_core.convert import load_vgen_unet

    return load_vgen_unet(reference / "vgen_unet.safetensors", **reference_meta["config"])


@pytest.fixture
def one_shape_scene():
    """Builds a one-shape scene on grey with the motion, speed, colour, colour-change target, x and shape given."""
    def build(motion, speed="quickly", colour="red", target=None, x=0.5, shape="square") -> Scene:
        return Scene(0, (SceneObject(shape, colour, x, 0.5, 0.25, target),), motion, speed, "grey")
    return build
