"""LoRA on the pipeline (higen_core.lora): an adapter saved in diffusers' format loads into a fresh pipeline as a
diffusers user expects, with a scale, and unloads back to the base model."""

import pytest
import torch

from higen_core import HiGenPipeline
from higen_core.lora import LORA_WEIGHT_NAME, lora_config, lora_state_dict_of
from higen_core.testing import tiny_pipeline


def video(pipe):
    return pipe("a red circle", num_frames=4, num_inference_steps=2, guidance_scale=3.0, output_type="latent",
                generator=torch.Generator().manual_seed(0)).latents


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A tiny pipeline with a rank-4 adapter whose B matrices are random (a trained adapter's are not zero), its
    video, and the adapter saved to a folder."""
    pipe = tiny_pipeline()
    pipe.unet.add_adapter(lora_config(4))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in pipe.unet.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    folder = tmp_path_factory.mktemp("lora")
    HiGenPipeline.save_lora_weights(folder, unet_lora_layers=lora_state_dict_of(pipe.unet))
    return video(pipe), folder


def test_a_saved_adapter_reloads_to_the_same_video_and_unloads_to_the_base(adapter):
    tuned, folder = adapter
    pipe = tiny_pipeline()
    base = video(pipe)
    weights = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    pipe.load_lora_weights(folder, adapter_name="mine")
    torch.testing.assert_close(video(pipe), tuned, rtol=0, atol=1e-5)
    assert not torch.allclose(tuned, base, atol=1e-3)
    pipe.set_adapters(["mine"], adapter_weights=[0.0])
    torch.testing.assert_close(video(pipe), base, rtol=0, atol=1e-5)
    pipe.set_adapters(["mine"], adapter_weights=[0.5])
    half = video(pipe)
    assert not torch.allclose(half, base, atol=1e-4) and not torch.allclose(half, tuned, atol=1e-4)
    pipe.unload_lora_weights()
    torch.testing.assert_close(video(pipe), base, rtol=0, atol=0)
    assert all(torch.equal(weights[k], v) for k, v in pipe.unet.state_dict().items())


def test_an_adapter_is_small_and_holds_only_adapter_weights(adapter):
    from safetensors.torch import load_file

    _, folder = adapter
    state = load_file(folder / LORA_WEIGHT_NAME)
    assert state and all(k.startswith("unet.") and ".lora_" in k for k in state)
    adapter_size = sum(v.numel() for v in state.values())
    assert adapter_size < 0.2 * sum(p.numel() for p in tiny_pipeline().unet.parameters())
    # Every default target got an adapter: the temporal attention and the two factor MLPs included.
    for part in ("temp_attentions", "motion_embedding.linear_2", "appearance_embedding.linear_1", "text_resampler"):
        assert any(part in k for k in state), part


def test_what_is_not_a_lora_is_refused_clearly(tmp_path):
    pipe = tiny_pipeline()
    with pytest.raises(ValueError, match="Not a LoRA checkpoint"):
        pipe.load_lora_weights({"unet.conv_in.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="no weights for the UNet"):
        pipe.load_lora_weights({"text_encoder.x.lora_A.weight": torch.zeros(1)})
