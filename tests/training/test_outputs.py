"""What a run writes besides checkpoints: its sample videos show the model being trained (its EMA weights when it
keeps some) with the run's sample settings, each written down in the MP4."""

import copy
import fractions

import av
import numpy as np
import PIL.Image
import pytest
import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel

from higen_core import HiGenPipeline
from higen_core.pipeline_higen import default_scheduler
from higen_core.training import outputs
from higen_core.testing import tiny_train_config
from higen_core.training.models import load_components
from higen_core.video_io import read_mp4_metadata


@pytest.mark.parametrize("sample_motion_factor, expected_motion_factor", [(30.0, 30.0), (None, "recommended")])
def test_samples_show_the_ema_weights_with_the_runs_settings(tmp_path, monkeypatch, sample_motion_factor,
                                                             expected_motion_factor):
    config = tiny_train_config(output_dir=str(tmp_path / "run"), fps=4.0, seed=5, sample_prompts=["a", "b c"],
                         sample_inference_steps=2, sample_guidance_scale=3.0,
                         sample_motion_factor=sample_motion_factor)
    components = load_components(config)
    unet = components.unet
    ema = EMAModel(copy.deepcopy(unet).parameters())
    for shadow in ema.shadow_params:  # EMA weights that differ from the trained ones
        shadow.add_(0.05 * torch.randn_like(shadow))
    trained = {k: v.clone() for k, v in unet.state_dict().items()}
    written = []
    real_mp4 = outputs.export_mp4
    monkeypatch.setattr(outputs, "export_mp4", lambda frames, path, **kwargs: (
        written.append(np.stack([np.asarray(frame) for frame in frames])), real_mp4(frames, path, **kwargs))[1])

    outputs.write_samples(Accelerator(cpu=True), unet, components, ema, config, step=7)
    outputs.write_samples(Accelerator(cpu=True), unet, components, None, config, step=8)  # the folder is there now
    del written[2:]

    # The trained weights are back, in training mode.
    assert unet.training and all(torch.equal(trained[k], v) for k, v in unet.state_dict().items())
    # The videos are the pipeline's, with the EMA weights and the run's sample settings.
    with_ema = copy.deepcopy(unet)
    ema.copy_to(with_ema.parameters())
    pipe = HiGenPipeline(components.vae, components.text_encoder, components.tokenizer, unet=with_ema.eval(),
                         scheduler=default_scheduler())
    motion_factor = pipe.settings.motion_factor if expected_motion_factor == "recommended" else expected_motion_factor
    expected = pipe(["a", "b c"], num_inference_steps=2, guidance_scale=3.0, motion_factor=motion_factor,
                    generator=torch.Generator().manual_seed(5)).frames
    assert len(written) == 2
    for frames, video in zip(written, expected):
        assert np.array_equal(frames, np.stack([np.asarray(frame) for frame in video]))
    folder = tmp_path / "run" / "samples"
    assert read_mp4_metadata(folder / "step-000007-1.mp4") == {
        "step": 7, "prompt": "b c", "motion_factor": motion_factor, "num_inference_steps": 2, "guidance_scale": 3.0,
        "seed": 5}
    with av.open(str(folder / "step-000007-0.mp4")) as container:
        assert container.streams.video[0].average_rate == fractions.Fraction(4)
    with PIL.Image.open(folder / "step-000007-0.gif") as gif:
        assert gif.info["duration"] == 250  # 4 fps
