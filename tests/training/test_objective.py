"""What a training step feeds the UNet (higen_core.training.objective.model_inputs): a video batch is conditioned
on its middle frame, on motion factors measured on its own latents and on the appearance rows of the frozen image
model; an image batch on nothing but its caption, as spatial reasoning is at inference."""

import dataclasses

import pytest
import torch

from higen_core.conditioning import appearance_matrix_from_features, motion_factors_from_latents
from higen_core.testing import tiny_train_config
from higen_core.training.config import TrainConfig
from higen_core.training.models import load_components
from higen_core.training.objective import model_inputs


@pytest.fixture(scope="module")
def setup():
    config = tiny_train_config(num_frames=5, text_dropout=0.0, uniform_motion_factors=0.0)
    return config, load_components(config)


def frames(batch: int, count: int) -> torch.Tensor:
    """(B, F, 3, 16, 16) pixels in [-1, 1], every frame different."""
    return torch.rand(batch, count, 3, 16, 16, generator=torch.Generator().manual_seed(count)) * 2 - 1


def test_a_video_is_conditioned_on_its_middle_frame_and_its_own_measurements(setup):
    config, components = setup
    width = components.unet.config.appearance_width
    pixels = frames(2, 5)
    torch.manual_seed(0)
    latents, conditions, text = model_inputs({"pixel_values": pixels, "captions": ["a", "b"]}, components, config,
                                             width, torch.device("cpu"))
    assert latents.shape == (2, 4, 5, 8, 8) and text.shape[0] == 2
    torch.testing.assert_close(conditions["spatial_prior"], latents[:, :, 2], rtol=0, atol=0)
    torch.testing.assert_close(conditions["motion_factors"], motion_factors_from_latents(latents), rtol=0, atol=0)
    assert conditions["motion_factors"].shape == (2, 4) and (conditions["motion_factors"] > 0).all()
    with torch.no_grad():
        features = components.appearance(pixels.flatten(0, 1)).unflatten(0, (2, 5))
    torch.testing.assert_close(conditions["appearance_matrix"], appearance_matrix_from_features(features, width))


def test_an_image_is_conditioned_as_spatial_reasoning_is_at_inference(setup):
    config, components = setup
    width = components.unet.config.appearance_width
    latents, conditions, _ = model_inputs({"pixel_values": frames(3, 1), "captions": ["a", "b", "c"]}, components,
                                          config, width, torch.device("cpu"))
    assert latents.shape == (3, 4, 1, 8, 8) and conditions["spatial_prior"] is None
    assert torch.equal(conditions["motion_factors"], torch.zeros(3))
    assert torch.equal(conditions["appearance_matrix"], torch.ones(3, 1, width))
    # Uniform motion factors are a video's: an image keeps its single zero.
    uniform = dataclasses.replace(config, uniform_motion_factors=1.0)
    _, conditions, _ = model_inputs({"pixel_values": frames(3, 1), "captions": ["a", "b", "c"]}, components,
                                    uniform, width, torch.device("cpu"))
    assert torch.equal(conditions["motion_factors"], torch.zeros(3))


def test_motion_factors_are_measured_as_the_model_records_and_a_run_can_set_the_measure():
    # null keeps init_from's measure (the tiny UNet's 'scaled:l2'); a given one is used and recorded in the model,
    # so the trained model's γm keeps the meaning it was trained with.
    base = tiny_train_config(num_frames=5, text_dropout=0.0)
    assert load_components(base).unet.config.motion_factor_measure == "scaled:l2"
    config = TrainConfig(**{**base.to_dict(), "motion_factor_measure": "unscaled:l1"})
    components = load_components(config)
    assert components.unet.config.motion_factor_measure == "unscaled:l1"
    torch.manual_seed(0)
    latents, conditions, _ = model_inputs({"pixel_values": frames(2, 5), "captions": ["a", "b"]}, components, config,
                                          components.unet.config.appearance_width, torch.device("cpu"))
    scaling = components.vae.config.scaling_factor
    expected = (latents[:, :, 1:] - latents[:, :, :-1]).abs().sum(dim=(1, 3, 4)) / scaling
    torch.testing.assert_close(conditions["motion_factors"], expected.round(), rtol=0, atol=0)


@pytest.mark.parametrize("offset_noise", [0.0, 0.5])
def test_the_training_noise_carries_offset_noise_per_sample_channel_and_frame(offset_noise):
    from types import SimpleNamespace

    from higen_core.pipeline_higen import default_scheduler
    from higen_core.training.objective import diffusion_loss

    seen = {}

    def unet(noisy, timesteps, text_states, **conditions):
        seen.update(noisy=noisy, timesteps=timesteps)
        return SimpleNamespace(sample=torch.zeros_like(noisy))

    scheduler = default_scheduler()
    latents = torch.zeros(64, 2, 3, 32, 32)  # clean latents of zero: the noisy input is the noise, scaled
    diffusion_loss(unet, latents, {}, None, scheduler, offset_noise, torch.Generator().manual_seed(0))
    sigma = (1 - scheduler.alphas_cumprod[seen["timesteps"]]).sqrt().view(-1, 1, 1, 1, 1)
    noise = seen["noisy"] / sigma
    # One offset per sample, channel and frame shifts each frame's whole plane: the planes' means spread by it.
    spread = noise.mean(dim=(3, 4)).std().item()
    assert spread == pytest.approx(max(offset_noise, 1 / 32), rel=0.15)
    # By default no timestep is favoured: a tenth of them fall in the noisiest tenth.
    assert (seen["timesteps"] >= 900).float().mean().item() < 0.25
