"""The frozen appearance model: a model folder's image processor tells the frame size and normalisation it gets."""

import pytest
import torch
from transformers import BitImageProcessor, ViTImageProcessor

from higen_core.training.models import AppearanceEncoder, tiny_appearance_model


@pytest.mark.parametrize("processor, size", [
    (BitImageProcessor(do_center_crop=True, size={"shortest_edge": 20}, crop_size={"height": 12, "width": 16}),
     (12, 16)),  # DINO's: resize, then a centre crop, which is what the model sees
    (BitImageProcessor(do_center_crop=False, size={"shortest_edge": 20}), (20, 20)),
    (ViTImageProcessor(size={"height": 24, "width": 20}), (24, 20)),  # no crop at all: the resize
])
def test_frames_get_the_size_and_statistics_the_processor_names(tmp_path, processor, size):
    processor.image_mean, processor.image_std = [0.1, 0.2, 0.3], [0.4, 0.5, 0.6]
    tiny_appearance_model().save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    encoder = AppearanceEncoder.load(str(tmp_path))
    assert encoder.size == size
    assert torch.allclose(encoder.mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))
    assert torch.allclose(encoder.std.flatten(), torch.tensor([0.4, 0.5, 0.6]))
    assert encoder(torch.rand(2, 3, 16, 16) * 2 - 1).shape == (2, 32)


@pytest.mark.parametrize("frozen_dtype, device, mixed_precision, dtype", [
    ("auto", "cpu", "bf16", torch.float32),  # a CPU computes in float32 whatever the training precision
    ("auto", "meta", "bf16", torch.bfloat16),  # an accelerator: half precision, the kind training mixes in
    ("auto", "meta", "fp16", torch.float16),
    ("auto", "meta", "no", torch.float16),
    ("bfloat16", "cpu", "no", torch.bfloat16),  # named: as named
    ("float32", "meta", "fp16", torch.float32),
])
def test_frozen_models_run_in_the_precision_their_device_suits(frozen_dtype, device, mixed_precision, dtype):
    from higen_core.testing import tiny_train_config
    from higen_core.training.models import load_components, place_frozen_models

    components = load_components(tiny_train_config())
    place_frozen_models(components, frozen_dtype, torch.device(device), mixed_precision)
    for frozen in (components.vae, components.text_encoder, components.appearance.model):
        parameter = next(frozen.parameters())
        assert (parameter.dtype, parameter.device.type) == (dtype, device)
    assert next(components.unet.parameters()).dtype == torch.float32  # the trained model is the optimizer's


def test_a_size_the_networks_cannot_halve_is_refused_with_the_multiple_they_need():
    from higen_core.testing import tiny_train_config
    from higen_core.training.config import ConfigError
    from higen_core.training.models import load_components

    with pytest.raises(ConfigError) as error:
        load_components(tiny_train_config(height=18))
    assert str(error.value).startswith("height: must be a multiple of 4 (VAE factor 2 x 2 for ")


def test_a_folder_of_another_model_is_refused_as_init_from(tmp_path):
    from higen_core.testing import tiny_pipeline
    from higen_core.training.config import ConfigError, TrainConfig
    from higen_core.training.models import load_components

    tiny_pipeline().vae.save_pretrained(tmp_path)
    with pytest.raises(ConfigError) as error:
        load_components(TrainConfig(init_from=str(tmp_path), vae="tiny", text_encoder="tiny", tokenizer="tiny",
                                    appearance_model="tiny", num_frames=4, height=16, width=16))
    assert str(error.value) == (f"init_from: {tmp_path} holds a AutoencoderKL; expected a HiGen pipeline, a "
                                "UNet3DConditionModel or a UNet2DConditionModel (pipeline or unet folder).")
