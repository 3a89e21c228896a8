"""The UI's pure helpers, its wiring (elem_ids, endpoints, queue) and the rule that the UI imports no torch."""

import os
import subprocess
import sys
from pathlib import Path

from studio.model import (SHAPES_APPEARANCE_FACTOR, SHAPES_GUIDANCE, SHAPES_MOTION_EXAMPLE_LABELS,
                          SHAPES_MOTION_EXAMPLES, StudioModel)
from studio.sessions import PriorRecord
from studio.ui import UI_HEADROOM, create_demo, default_motion_prompts, queue_full_message, record_id_from_path

ELEM_IDS = ["prior-prompt", "prior-negative", "prior-seed", "prior-generate", "prior-gallery", "prior-upload",
            "motion-prompts", "motion-factor", "appearance-factor", "animate", "stop", "videos", "history"]


def test_queue_full_message():
    assert queue_full_message(3, 16) is None and queue_full_message(99, None) is None
    assert "busy: 16 jobs are already waiting" in queue_full_message(16, 16)


def test_record_ids_survive_gradio_cache_paths():
    assert record_id_from_path("/tmp/gradio/abc/prior-0123abcd.png") == "0123abcd"
    assert record_id_from_path(("/tmp/gradio/x/video-99.gif", "caption")[0]) == "99"
    assert record_id_from_path("/tmp/upload/cat.png") is None


def test_motion_prompts_follow_the_prior_until_edited():
    old = PriorRecord("a", None, {"prompt": "a cat"}, None)
    new = PriorRecord("b", None, {"prompt": "a dog"}, None)
    assert default_motion_prompts("", None, new) == "a dog"
    assert default_motion_prompts("a cat", old, new) == "a dog"
    assert default_motion_prompts("a cat walks\na cat sits", old, new) == "a cat walks\na cat sits"


def test_wiring(model, store):
    demo = create_demo(model, store, queue_size=5)
    ids = {block.elem_id for block in demo.blocks.values()}
    assert set(ELEM_IDS) <= ids
    slider = next(b for b in demo.blocks.values() if b.elem_id == "motion-factor")
    assert (slider.minimum, slider.maximum, slider.value) == (0, 100, 50)  # the tiny model's own range
    starting = {b.elem_id: b.value for b in demo.blocks.values()
                if b.elem_id in ("prior-guidance", "animate-guidance", "appearance-factor")}
    assert starting == {"prior-guidance": 12.0, "animate-guidance": 12.0, "appearance-factor": 1.0}  # the pipeline's
    demo_model = create_demo(StudioModel.load(None), store)  # the bundled demo model: the values measured on it
    starting = {b.elem_id: b.value for b in demo_model.blocks.values()
                if b.elem_id in ("prior-guidance", "animate-guidance", "appearance-factor", "motion-factor")}
    assert starting == {"prior-guidance": SHAPES_GUIDANCE, "animate-guidance": SHAPES_GUIDANCE,
                        "appearance-factor": SHAPES_APPEARANCE_FACTOR, "motion-factor": 10.0}
    # step 2's examples fill the motion prompts and the γm that goes with them (the demo model's only)
    assert motion_example_rows(demo_model) == [[p, m] for p, m in SHAPES_MOTION_EXAMPLES]
    assert motion_example_rows(demo) is None
    # each shown by its motions and γm, not by its prompts run together on one line
    labels = motion_examples_dataset(demo_model).sample_labels
    assert labels == SHAPES_MOTION_EXAMPLE_LABELS and labels[0] == "moves left quickly | moves right quickly (γm 17)"
    banner = next(b for b in demo.blocks.values() if b.elem_id == "model-banner")
    assert banner.visible and "untrained tiny model" in banner.value
    gpu = [f for f in demo.fns.values() if f.concurrency_id == "gpu"]
    assert {f.api_name for f in gpu} >= {"generate_prior", "animate", "use_image"}
    assert all(f.concurrency_limit == 1 for f in gpu)
    assert demo._queue.max_size == 5 + UI_HEADROOM  # the studio itself refuses GPU jobs past 5


def motion_examples_dataset(demo):
    """The examples whose inputs are the motion prompts and the motion factor, if there are some."""
    for dataset in (b for b in demo.blocks.values() if type(b).__name__ == "Dataset"):
        if [c.elem_id for c in dataset._components] == ["motion-prompts", "motion-factor"]:
            return dataset
    return None


def motion_example_rows(demo) -> list | None:
    dataset = motion_examples_dataset(demo)
    return None if dataset is None else [list(row) for row in dataset.samples]


def test_the_train_tab_is_built_only_when_asked(model, store, tmp_path):
    from studio.train_tab import TrainingWorkspace

    plain = create_demo(model, store)
    assert not any(b.elem_id == "train-start" for b in plain.blocks.values())
    demo = create_demo(model, store, training=TrainingWorkspace(tmp_path / "ws"))
    command = next(b for b in demo.blocks.values() if b.elem_id == "train-command")
    assert command.value.split()[1:4] == ["-m", "higen_core.train", "--output-dir"]


def test_the_ui_imports_no_torch():
    repo = Path(__file__).resolve().parents[2]
    code = "import sys, studio.ui, studio.sessions; sys.exit('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(repo)}
    assert subprocess.run([sys.executable, "-c", code], cwd=repo, env=env).returncode == 0


def test_on_a_space_examples_are_cached_lazily_and_models_cannot_be_loaded_by_path(model, store, capsys):
    local = create_demo(model, store)
    assert "load_example_output" not in {f.name for f in local.fns.values()}  # locally, examples only fill inputs
    demo = create_demo(model, store, on_spaces=True, allow_model_loading=False)
    assert "load_example_output" in {f.name for f in demo.fns.values()}
    assert "at first use" in capsys.readouterr().out  # lazily: nothing runs at start-up
    block = next(b for b in demo.blocks.values() if b.elem_id == "model-source")
    while block.elem_id != "model-loading":  # up to the group that holds the loading controls
        block = block.parent
    assert block.visible is False
