"""LoRA on the pipeline (higen_core.lora): an adapter saved in diffusers' format loads into a fresh pipeline as a
diffusers user expects, with a scale, and unloads back to the base model."""

import shutil

import pytest
import torch

from higen_core import HiGenPipeline
from higen_core.loading import apply_lora
from higen_core.lora import LORA_WEIGHT_NAME, lora_config, lora_metadata_of
from higen_core.testing import add_random_lora_, tiny_pipeline


def video(pipe):
    return pipe("a red circle", num_frames=4, num_inference_steps=2, guidance_scale=3.0, output_type="latent",
                generator=torch.Generator().manual_seed(0)).latents


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A tiny pipeline's video with a random rank-4 adapter, and the adapter saved to a folder."""
    pipe = tiny_pipeline()
    layers = add_random_lora_(pipe, seed=1)
    folder = tmp_path_factory.mktemp("lora")
    HiGenPipeline.save_lora_weights(folder, unet_lora_layers=layers)
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
    with pytest.raises(ValueError, match="^Not a LoRA checkpoint: every weight's name must contain 'lora'"):
        pipe.load_lora_weights({"unet.conv_in.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="no weights for the UNet"):
        pipe.load_lora_weights({"text_encoder.x.lora_A.weight": torch.zeros(1)})


def test_a_new_adapter_is_the_base_model_and_alpha_sets_its_scale():
    pipe = tiny_pipeline()
    base = video(pipe)
    pipe.unet.add_adapter(lora_config(4))
    assert torch.equal(video(pipe), base)  # B starts at zero
    assert (lora_config(4).lora_alpha, lora_config(4, 16).lora_alpha, lora_config(4).r) == (4, 16, 4)
    assert lora_config(2, targets=["to_q"]).target_modules == {"to_q"}


def test_alpha_and_a_file_name_of_ones_own_survive_saving(tmp_path):
    tuned = tiny_pipeline()
    layers = add_random_lora_(tuned, rank=4, alpha=16, seed=1)
    HiGenPipeline.save_lora_weights(tmp_path, unet_lora_layers=layers, weight_name="mine.safetensors",
                                    unet_lora_adapter_metadata=lora_metadata_of(tuned.unet))
    assert (tmp_path / "mine.safetensors").is_file() and not (tmp_path / LORA_WEIGHT_NAME).exists()
    pipe = tiny_pipeline()
    pipe.load_lora_weights(tmp_path, weight_name="mine.safetensors")
    torch.testing.assert_close(video(pipe), video(tuned), rtol=0, atol=1e-5)
    with pytest.raises(ValueError) as error:
        HiGenPipeline.save_lora_weights(tmp_path, unet_lora_layers={})
    assert str(error.value) == "Give unet_lora_layers: the adapter weights to save."
    with pytest.raises(TypeError, match="unexpected options: revisoin, tokenn$"):
        HiGenPipeline.lora_state_dict(tmp_path, weight_name="mine.safetensors", tokenn="x", revisoin="main")


def test_a_lora_made_for_another_network_is_refused_in_one_line():
    layers = {f"unet.{k}": v for k, v in add_random_lora_(tiny_pipeline(), seed=1).items()}
    key_a = next(k for k in layers if k.endswith("attn1.to_q.lora_A.weight"))
    key_b = key_a.replace("lora_A", "lora_B")
    module = key_a[len("unet."):-len(".lora_A.weight")]
    pipe = tiny_pipeline()
    features = pipe.unet.get_submodule(module)
    wider_in = {**layers, key_a: torch.zeros(4, features.in_features + 1)}
    with pytest.raises(ValueError, match=f"{module} has {features.in_features} features where the LoRA has "
                                         f"{features.in_features + 1}"):
        pipe.load_lora_weights(wider_in)
    wider_out = {**layers, key_b: torch.zeros(features.out_features + 2, 4)}
    with pytest.raises(ValueError, match=f"has {features.out_features} features where the LoRA has "
                                         f"{features.out_features + 2}"):
        pipe.load_lora_weights(wider_out)
    elsewhere = {**layers, "unet.no_such_block.to_q.lora_A.weight": torch.zeros(4, 8)}
    with pytest.raises(ValueError, match="adapts no_such_block.to_q, which this model does not have"):
        pipe.load_lora_weights(elsewhere)
    assert not pipe.get_list_adapters()  # nothing was half-loaded


def test_apply_lora_takes_a_folder_or_its_file_and_replaces_the_one_before(adapter, tmp_path):
    tuned, folder = adapter
    pipe = tiny_pipeline()
    base = video(pipe)
    apply_lora(pipe, folder / LORA_WEIGHT_NAME)
    torch.testing.assert_close(video(pipe), tuned, rtol=0, atol=1e-5)
    apply_lora(pipe, folder, scale=0.0)  # the same name again: replaced, not stacked
    assert pipe.get_list_adapters() == {"unet": ["lora"]}
    torch.testing.assert_close(video(pipe), base, rtol=0, atol=1e-5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no pytorch_lora_weights.safetensors"):
        apply_lora(pipe, tmp_path / "empty")
    for missing in (tmp_path / "missing", "./missing", "missing", "runs/missing/lora", "~/missing"):
        with pytest.raises(ValueError, match=f"no such LoRA folder or file: {missing}"):
            apply_lora(pipe, missing)


def test_apply_lora_takes_a_file_of_any_name_and_a_home_relative_folder(adapter, tmp_path, monkeypatch):
    tuned, folder = adapter
    pipe = tiny_pipeline()
    shutil.copy(folder / LORA_WEIGHT_NAME, tmp_path / "my-style.safetensors")
    (tmp_path / "another-style.safetensors").write_bytes(b"not this one")  # the file named is the one read
    apply_lora(pipe, tmp_path / "my-style.safetensors")
    torch.testing.assert_close(video(pipe), tuned, rtol=0, atol=1e-5)
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(folder, tmp_path / "styles" / "mine")
    apply_lora(pipe, "~/styles/mine", scale=0.0)
    torch.testing.assert_close(video(pipe), video(tiny_pipeline()), rtol=0, atol=1e-5)


def test_a_hub_id_goes_to_the_hub_as_it_is(monkeypatch):
    pipe = tiny_pipeline()
    asked = []
    monkeypatch.setattr(pipe, "load_lora_weights", lambda source, **kwargs: asked.append((source, kwargs)))
    monkeypatch.setattr(pipe, "set_adapters", lambda *args, **kwargs: None)
    apply_lora(pipe, "owner/kite-style", scale=0.5)
    assert asked == [("owner/kite-style", {"adapter_name": "lora"})]


def test_an_unreadable_lora_file_is_refused_in_one_line(tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    pipe = tiny_pipeline()
    with pytest.raises(ValueError, match=f"^cannot load the LoRA {broken} into this model: .*header") as error:
        apply_lora(pipe, broken)
    assert "\n" not in str(error.value) and not pipe.get_list_adapters()


def test_a_fused_lora_gives_the_same_video_and_unfuses_to_the_base(adapter):
    tuned, folder = adapter
    pipe = tiny_pipeline()
    base = video(pipe)
    pipe.load_lora_weights(folder, adapter_name="mine")
    weight = pipe.unet.conv_in.weight.clone()
    query = next(m for n, m in pipe.unet.named_modules() if n.endswith("attn1.to_q"))
    before = query.base_layer.weight.clone()
    pipe.fuse_lora()
    assert not torch.equal(query.base_layer.weight, before)  # folded into the base weights
    fused = query.base_layer.weight.clone()
    torch.testing.assert_close(video(pipe), tuned, rtol=0, atol=1e-4)
    pipe.unfuse_lora()
    assert torch.allclose(query.base_layer.weight, before, atol=1e-6)
    torch.testing.assert_close(video(pipe), tuned, rtol=0, atol=1e-4)  # the adapter, unfused, is still on
    pipe.unload_lora_weights()  # unfusing subtracts what fusing added: equal up to float rounding
    torch.testing.assert_close(video(pipe), base, rtol=0, atol=1e-4)
    assert torch.equal(pipe.unet.conv_in.weight, weight)
    half = tiny_pipeline()
    half.load_lora_weights(folder)
    half.fuse_lora(lora_scale=0.5)  # half the adapter's change goes in
    query = next(m for n, m in half.unet.named_modules() if n.endswith("attn1.to_q"))
    torch.testing.assert_close(query.base_layer.weight - before, 0.5 * (fused - before), rtol=0, atol=1e-6)
