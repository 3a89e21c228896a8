import pytest
import torch
from safetensors.torch import load_file

from higen_core import HiGenPipeline
from higen_core.convert import load_vgen_unet, main
from higen_core.settings import released_settings
from higen_core.testing import tiny_text_encoder, tiny_tokenizer, tiny_vae


def _official_state(reference):
    return load_file(reference / "vgen_unet.safetensors")


def test_loads_pth_with_and_without_wrapper_and_state_dicts(tmp_path, reference, reference_meta):
    state = _official_state(reference)
    torch.save({"state_dict": state, "step": 725000}, tmp_path / "wrapped.pth")
    torch.save(state, tmp_path / "plain.pth")
    x = torch.randn(1, 4, 2, 8, 12)
    outputs = []
    for source in (tmp_path / "wrapped.pth", tmp_path / "plain.pth", state, reference / "vgen_unet.safetensors"):
        unet = load_vgen_unet(source, **reference_meta["config"])
        with torch.no_grad():
            outputs.append(unet(x, 3, torch.randn(1, 77, 64, generator=torch.Generator().manual_seed(0))).sample)
    for out in outputs[1:]:
        assert torch.equal(out, outputs[0])


def test_missing_and_left_over_keys_are_named(reference, reference_meta):
    state = _official_state(reference)
    missing = dict(state)
    missing.pop("img_embedding.weight")
    with pytest.raises(ValueError, match="prior_conv_in.weight"):
        load_vgen_unet(missing, **reference_meta["config"])
    extra = dict(state, **{"input_blocks.99.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="input_blocks.99.0.weight"):
        load_vgen_unet(extra, **reference_meta["config"])
    # The wrong configuration for these weights: said, not silently loaded.
    with pytest.raises(ValueError):
        load_vgen_unet(state, **{**reference_meta["config"], "num_res_blocks": 2})


def test_unknown_arguments_and_unsupported_configurations():
    with pytest.raises(TypeError, match="not_an_argument"):
        load_vgen_unet({}, not_an_argument=1)
    with pytest.raises(ValueError, match="context_dim"):
        load_vgen_unet({}, context_dim=512)
    with pytest.raises(FileNotFoundError):
        load_vgen_unet("/nonexistent/higen.pth")


def test_cli_writes_a_pipeline_folder_that_loads_and_runs(tmp_path, reference, reference_meta, monkeypatch):
    # A stand-in for the Stable Diffusion 2.1 base: the converter copies its VAE, text encoder and tokenizer.
    base = tmp_path / "base"
    tokenizer = tiny_tokenizer()
    tiny_vae().save_pretrained(base / "vae")
    tokenizer.save_pretrained(base / "tokenizer")
    # The reference network reads 64-wide text states.
    encoder = tiny_text_encoder(tokenizer)
    encoder.config.hidden_size = 64
    from transformers import CLIPTextModel

    CLIPTextModel(encoder.config).save_pretrained(base / "text_encoder")

    import higen_core.convert as convert

    monkeypatch.setattr(convert, "RELEASED_VGEN_CONFIG", {**convert.RELEASED_VGEN_CONFIG, **reference_meta["config"]})
    main(["--vgen-checkpoint", str(reference / "vgen_unet.safetensors"), "--base", str(base),
          "--out", str(tmp_path / "out")])
    pipe = HiGenPipeline.from_pretrained(tmp_path / "out")
    # The released model's recommended settings travel with the folder: γm 500 in 300-600, γa 1, guidance 12.
    assert pipe.settings == released_settings()
    pipe.set_progress_bar_config(disable=True)
    video = pipe.animate(torch.zeros(1, 4, 8, 12), "a prompt", num_frames=4, num_inference_steps=1,
                         output_type="np")
    assert video.frames.shape == (1, 4, 16, 24, 3)
