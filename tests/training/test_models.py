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
