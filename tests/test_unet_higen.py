import json

import pytest
import torch
from diffusers import UNet2DConditionModel, UNet3DConditionModel
from diffusers.models.attention_processor import AttnProcessor

from higen_core import HiGenUNet3DModel
from higen_core.unet_higen import sinusoidal_embedding
from higen_core.testing import randomize_zero_initialised_, tiny_unet, tiny_unet_config


@pytest.mark.parametrize("case", ["spatial", "temporal", "temporal_f_motion"])
def test_reproduces_official_network(reference_unet, reference_cases, case):
    c = {k.split(".", 1)[1]: v for k, v in reference_cases.items() if k.startswith(case + ".")}
    with torch.no_grad():
        out = reference_unet(c["x"], c["t"], c["y"], spatial_prior=c["spat_prior"], motion_factors=c["motion_cond"],
                             appearance_matrix=c["appearance_cond"]).sample
    assert out.shape == c["out"].shape
    torch.testing.assert_close(out, c["out"], atol=1e-4, rtol=0)


def test_spatial_reasoning_skips_temporal_layers_exactly():
    unet = tiny_unet()
    x, text = torch.randn(2, 4, 1, 8, 8), torch.randn(2, 5, 32)
    with torch.no_grad():
        before = unet(x, 10, text).sample
        for name, param in unet.named_parameters():
            if unet.parameter_kind(name) == "temporal":
                param.add_(1.0)
        after = unet(x, 10, text).sample
    assert torch.equal(before, after)


def test_video_uses_prior_motion_and_appearance():
    unet = tiny_unet()
    x, text = torch.randn(1, 4, 8, 8, 8), torch.randn(1, 5, 32)
    base = dict(spatial_prior=torch.randn(1, 4, 8, 8), motion_factors=torch.full((1, 7), 40.0),
                appearance_matrix=torch.ones(1, 8, 8))
    with torch.no_grad():
        reference = unet(x, 10, text, **base).sample
        for key, other in [("spatial_prior", torch.randn(1, 4, 8, 8)), ("motion_factors", torch.full((1, 7), 90.0)),
                           ("appearance_matrix", torch.rand(1, 8, 8))]:
            assert not torch.allclose(unet(x, 10, text, **{**base, key: other}).sample, reference), key
        # F-1 motion factors are interpolated to F; F equal factors give the same as F-1 equal ones.
        same = unet(x, 10, text, **{**base, "motion_factors": torch.full((1, 8), 40.0)}).sample
    torch.testing.assert_close(same, reference)


def test_cached_deep_features_reproduce_the_whole_network():
    # Feature caching runs only the outermost level on cached deep features: given the deep features of the very
    # same call it must give the whole network's output, for videos and for one-frame priors.
    unet = randomize_zero_initialised_(tiny_unet())
    for frames in (4, 1):
        x, text, prior = torch.randn(2, 4, frames, 8, 8), torch.randn(2, 5, 32), torch.randn(2, 4, 8, 8)
        with torch.no_grad():
            whole = unet(x, 10, text, spatial_prior=prior, return_deep_features=True)
            cached = unet(x, 10, text, spatial_prior=prior, deep_features=whole.deep_features)
            # the prior's stem belongs to the outermost level: a cached call still sees the prior
            other_prior = unet(x, 10, text, spatial_prior=None, deep_features=whole.deep_features)
            as_tuple = unet(x, 10, text, spatial_prior=prior, return_deep_features=True, return_dict=False)
        assert whole.deep_features.shape[0] == 2 * frames
        torch.testing.assert_close(cached.sample, whole.sample, atol=1e-6, rtol=0)
        assert not torch.allclose(other_prior.sample, whole.sample)
        torch.testing.assert_close(as_tuple[1], whole.deep_features)
    with pytest.raises(ValueError, match="deep_features"):
        unet(torch.randn(1, 4, 4, 8, 8), 10, torch.randn(1, 5, 32), deep_features=whole.deep_features)


def test_released_checkpoint_keys_map_one_to_one(reference):
    from higen_core.convert import convert_vgen_state_dict, unet_config_from_vgen

    released = json.loads((reference / "official_unet_keys.json").read_text())
    config = unet_config_from_vgen(**released["config"])
    fake = {k: torch.empty(shape, device="meta") for k, shape in released["keys"].items()}
    converted = convert_vgen_state_dict(fake, config)
    with torch.device("meta"):
        unet = HiGenUNet3DModel(**config)
    ours = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    assert len(converted) == len(fake) == len(ours)
    assert {k: tuple(v.shape) for k, v in converted.items()} == ours
    assert sum(p.numel() for p in unet.parameters()) == released["parameters"]


def test_defaults_are_the_released_configuration(reference):
    from higen_core.convert import unet_config_from_vgen

    released = json.loads((reference / "official_unet_keys.json").read_text())
    config = unet_config_from_vgen(**released["config"])
    with torch.device("meta"):
        default = HiGenUNet3DModel()

    def plain(value):
        return tuple(value) if isinstance(value, (list, tuple)) else value

    assert {k: plain(default.config[k]) for k in config} == {k: plain(v) for k, v in config.items()}
    # What the checkpoint does not say: its γm range (the paper's recommendation) and how its γm was measured (our
    # estimate; higen_core/training/README.md, "The motion factor's scale").
    assert (default.config.motion_factor_range, default.config.motion_factor_measure) == ((300.0, 600.0), "scaled:l1")
    with pytest.raises(ValueError, match="motion_factor_measure must be one of scaled:l2, "):
        HiGenUNet3DModel(**tiny_unet_config(motion_factor_measure="pixels:l2"))


def tiny_unet3d(layers_per_block: int = 1) -> UNet3DConditionModel:
    torch.manual_seed(0)
    return UNet3DConditionModel(
        sample_size=8, block_out_channels=(32, 64), layers_per_block=layers_per_block, cross_attention_dim=32,
        attention_head_dim=16, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
    ).eval()


# Two layers a level, as the released model has: every skip connection is taken in the source's order.
@pytest.mark.parametrize("layers_per_block", [1, 2])
def test_from_unet3d_gives_the_source_output(layers_per_block):
    source = tiny_unet3d(layers_per_block)
    randomize_zero_initialised_(source)
    unet = HiGenUNet3DModel.from_unet3d(source).eval()
    assert unet.text_resampler is None
    x, t, text = torch.randn(2, 4, 4, 8, 8), torch.tensor([10, 500]), torch.randn(2, 7, 32)
    with torch.no_grad():
        torch.testing.assert_close(unet(x, t, text).sample, source(x, t, text).sample, atol=1e-4, rtol=0)


def test_from_unet2d_gives_the_image_model_on_every_frame():
    torch.manual_seed(0)
    source = UNet2DConditionModel(
        sample_size=8, block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32,
        attention_head_dim=(2, 4), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), use_linear_projection=True,
    ).eval()
    randomize_zero_initialised_(source)
    unet = HiGenUNet3DModel.from_unet2d(source).eval()
    x, t, text = torch.randn(2, 4, 3, 8, 8), torch.tensor([10, 500]), torch.randn(2, 7, 32)
    with torch.no_grad():
        per_frame = torch.stack([source(x[:, :, f], t, text).sample for f in range(3)], dim=2)
        torch.testing.assert_close(unet(x, t, text).sample, per_frame, atol=1e-4, rtol=0)


def tiny_unet2d(**changes) -> UNet2DConditionModel:
    torch.manual_seed(0)
    config = dict(sample_size=8, block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32,
                  attention_head_dim=(2, 4), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                  up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), use_linear_projection=True)
    return UNet2DConditionModel(**{**config, **changes}).eval()


@pytest.mark.parametrize("changes, message", [
    ({"flip_sin_to_cos": False}, "timestep embedding is not the cos-first sinusoid HiGen uses"),
    ({"freq_shift": 1}, "timestep embedding is not the cos-first sinusoid HiGen uses"),
    ({"class_embed_type": "timestep"}, "uses `class_embed_type`, which HiGen has no counterpart for"),
    ({"addition_embed_type": "text_time", "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 64},
     "uses `addition_embed_type`"),
    ({"encoder_hid_dim": 16}, "uses `encoder_hid_dim`"),
    ({"time_cond_proj_dim": 8}, "uses `time_cond_proj_dim`"),
    ({"only_cross_attention": True}, "uses only/dual cross-attention, which HiGen has no counterpart for"),
    ({"dual_cross_attention": True}, "uses only/dual cross-attention, which HiGen has no counterpart for"),
    ({"attention_head_dim": (2, 2)}, r"attention heads have different widths per level \(\[16, 32\]\)"),
])
def test_a_source_unet_without_a_higen_counterpart_is_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        HiGenUNet3DModel.from_unet2d(tiny_unet2d(**changes))


def test_a_source_with_convolution_projections_in_half_precision_maps_too():
    """SD 1.x projects attention inputs with 1x1 convolutions; its config's single sample size is made square, and
    the new model keeps the source's dtype."""
    source = tiny_unet2d(use_linear_projection=False)
    randomize_zero_initialised_(source)
    unet = HiGenUNet3DModel.from_unet2d(source).eval()
    assert tuple(unet.config.sample_size) == (8, 8) and unet.config.num_frames == 16
    assert unet.config.use_text_resampler is False and unet.config.attention_head_dim == 16
    x, t, text = torch.randn(1, 4, 2, 8, 8), torch.tensor([10]), torch.randn(1, 7, 32)
    with torch.no_grad():
        per_frame = torch.stack([source(x[:, :, f], t, text).sample for f in range(2)], dim=2)
        torch.testing.assert_close(unet(x, t, text).sample, per_frame, atol=1e-4, rtol=0)
    assert HiGenUNet3DModel.from_unet2d(source.to(torch.float16)).dtype == torch.float16
    assert HiGenUNet3DModel.from_unet2d(tiny_unet2d(sample_size=(8, 12))).config.sample_size == (8, 12)
    # The source's output channels, and diffusers' 64 where a config records no sample size.
    assert HiGenUNet3DModel.from_unet2d(tiny_unet2d(out_channels=8)).config.out_channels == 8
    assert HiGenUNet3DModel.from_unet2d(tiny_unet2d(sample_size=None)).config.sample_size == (64, 64)
    # What the caller sets over the source's config.
    assert HiGenUNet3DModel.from_unet2d(source, num_frames=8).config.num_frames == 8
    assert HiGenUNet3DModel.from_unet3d(tiny_unet3d(), num_frames=8).config.num_frames == 8


def test_each_parameter_has_the_kind_that_training_treats_it_as():
    unet = tiny_unet()
    kinds = {name: unet.parameter_kind(name) for name, _ in unet.named_parameters()}
    assert kinds["transformer_in.norm.weight"] == kinds["down_blocks.0.temp_convs.0.conv1.2.weight"] == \
        kinds["down_blocks.0.temp_attentions.0.norm.weight"] == "temporal"
    assert kinds["down_blocks.0.attentions.0.norm.weight"] == kinds["conv_in.weight"] == "spatial"
    assert kinds["motion_embedding.linear_1.weight"] == kinds["prior_conv_in.weight"] == "higen"
    # Every temporal layer, wherever it sits, and nothing else.
    assert {name for name, kind in kinds.items() if kind == "temporal"} == {
        name for name in kinds if name.startswith("transformer_in.") or ".temp_" in name}


@pytest.mark.parametrize("kept", ["down_blocks.0.temp_convs", "mid_block.temp_convs", "up_blocks.1.temp_convs",
                                  "transformer_in", "down_blocks.0.temp_attentions", "mid_block.temp_attentions"])
def test_two_frames_already_go_through_each_temporal_layer(kept):
    """Only a single frame skips them (as the official network does): two frames are not two images. Each place is
    checked alone, every other temporal layer made an identity (a zero last projection, as they start)."""
    unet = tiny_unet()
    randomize_zero_initialised_(unet)
    with torch.no_grad():
        for name, module in unet.named_modules():
            if name.startswith(kept):
                continue
            if type(module).__name__ == "TemporalConvLayer":
                module.conv4[-1].weight.zero_(), module.conv4[-1].bias.zero_()
            if type(module).__name__ == "TransformerTemporalModel":
                module.proj_out.weight.zero_(), module.proj_out.bias.zero_()
    x, text = torch.randn(1, 4, 2, 8, 8), torch.randn(1, 5, 32)
    with torch.no_grad():
        video = unet(x, 5, text).sample
        frames = torch.cat([unet(x[:, :, f:f + 1], 5, text).sample for f in range(2)], dim=2)
    assert not torch.allclose(video, frames, atol=1e-4)


def test_save_and_load_in_safetensors(tmp_path):
    unet = tiny_unet()
    unet.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = HiGenUNet3DModel.from_pretrained(tmp_path).eval()
    x, text = torch.randn(1, 4, 3, 8, 8), torch.randn(1, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, 5, text).sample, unet(x, 5, text).sample)


def test_attention_processors_and_gradient_checkpointing_keep_the_math():
    unet = tiny_unet()
    x, text = torch.randn(1, 4, 3, 8, 8), torch.randn(1, 5, 32)
    with torch.no_grad():
        sdpa = unet(x, 5, text).sample
    unet.set_attn_processor(AttnProcessor())
    with torch.no_grad():
        torch.testing.assert_close(unet(x, 5, text).sample, sdpa, atol=1e-5, rtol=0)

    unet.train()
    unet(x, 5, text).sample.square().mean().backward()
    plain = {n: p.grad.clone() for n, p in unet.named_parameters() if p.grad is not None}
    unet.zero_grad(set_to_none=True)
    unet.enable_gradient_checkpointing()
    calls = []
    unet.down_blocks[0].resnets[0].register_forward_hook(lambda *args: calls.append(1))
    unet(x, 5, text).sample.square().mean().backward()
    for name, grad in plain.items():
        torch.testing.assert_close(dict(unet.named_parameters())[name].grad, grad, atol=1e-5, rtol=1e-4)
    assert len(calls) == 2  # really checkpointed: the block ran again in the backward pass, its activations not kept
    with torch.no_grad():
        unet(x, 5, text)
    assert len(calls) == 3  # without gradients, nothing to recompute


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(motion_factors=torch.zeros(1, 5)), "motion_factors"),
        (dict(appearance_matrix=torch.ones(1, 3, 4)), "appearance_matrix"),
        (dict(spatial_prior=torch.zeros(1, 4, 4, 4)), "spatial_prior"),
    ],
)
def test_bad_conditions_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_unet()(torch.randn(1, 4, 3, 8, 8), 5, torch.randn(1, 5, 32), **kwargs)


def test_a_sample_without_frames_is_refused_with_its_shape():
    unet = tiny_unet()
    with pytest.raises(ValueError, match=r"^sample must be \(B, C, F, H, W\); got shape \(1, 4, 8, 8\)\.$"):
        unet(torch.randn(1, 4, 8, 8), 5, torch.randn(1, 5, 32))
    assert unet(torch.randn(1, 4, 2, 8, 8), 5, torch.randn(1, 5, 32)).deep_features is None  # only when asked


def test_motion_factors_come_one_per_frame_or_per_pair_and_one_for_a_single_frame():
    unet = tiny_unet()
    x, text = torch.randn(1, 4, 4, 8, 8), torch.randn(1, 5, 32)
    for count in (4, 3):  # per frame, or per pair of frames
        unet(x, 5, text, motion_factors=torch.ones(1, count))
    with pytest.raises(ValueError, match="motion_factors"):
        unet(x, 5, text, motion_factors=torch.ones(1, 1))
    assert unet(x[:, :, :1], 5, text, motion_factors=torch.ones(1, 1)).sample.shape == (1, 4, 1, 8, 8)


def test_a_latent_of_odd_size_keeps_its_size():
    """Each level halves it, rounding up; going back up restores the size of the level's input, not twice its own."""
    unet = tiny_unet()
    x = torch.randn(1, 4, 2, 9, 7)
    assert unet(x, 5, torch.randn(1, 5, 32)).sample.shape == x.shape


def test_half_precision_runs_every_embedding_in_that_precision():
    unet = tiny_unet()
    randomize_zero_initialised_(unet)
    x, text = torch.randn(1, 4, 3, 8, 8), torch.randn(1, 5, 32)
    conditions = dict(spatial_prior=torch.randn(1, 4, 8, 8), motion_factors=torch.full((1, 2), 3.0),
                      appearance_matrix=torch.rand(1, 3, 8))
    with torch.no_grad():
        full = unet(x, 5, text, **conditions).sample
        half = unet.to(torch.bfloat16)(x, 5, text, **conditions).sample  # float32 inputs: cast where they enter
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), full, atol=0.1, rtol=0.05)


def test_an_odd_embedding_width_is_padded_with_a_zero():
    embedding = sinusoidal_embedding(torch.tensor([0.0, 3.0]), 5)
    assert embedding.shape == (2, 5) and torch.equal(embedding[:, 4], torch.zeros(2))
    torch.testing.assert_close(embedding[:, :4], sinusoidal_embedding(torch.tensor([0.0, 3.0]), 4))


def test_compiles_as_one_graph():
    # fullgraph=True raises on any graph break; the eager backend checks that quickly without generating code.
    unet = tiny_unet()
    compiled = torch.compile(unet, backend="eager", fullgraph=True)
    x, t, text = torch.randn(2, 4, 4, 8, 8), torch.tensor([3, 4]), torch.randn(2, 7, 32)
    conditions = dict(spatial_prior=torch.randn(2, 4, 8, 8), motion_factors=torch.ones(2, 3),
                      appearance_matrix=torch.ones(2, 4, 8))
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, t, text, **conditions).sample, unet(x, t, text, **conditions).sample)
        # feature caching's two calls (whole with deep features out, cached with them in) are whole graphs too
        whole = compiled(x, t, text, **conditions, return_deep_features=True)
        cached = compiled(x, t, text, **conditions, deep_features=whole.deep_features)
    torch.testing.assert_close(cached.sample, whole.sample, atol=1e-6, rtol=0)
