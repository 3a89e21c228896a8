import json
import pickle
import re

import pytest
import torch
from safetensors.torch import load_file

from higen_core import HiGenPipeline, HiGenUNet3DModel
import higen_core.convert as convert_module
from higen_core.convert import convert_to_pipeline, convert_vgen_state_dict, load_vgen_unet, main, unet_config_from_vgen
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


def test_a_checkpoint_that_could_run_code_is_refused(tmp_path, reference):
    torch.save({"state_dict": _official_state(reference), "config": Gadget()}, tmp_path / "unsafe.pth")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_vgen_unet(tmp_path / "unsafe.pth")


class Gadget:
    """Any object a pickle would have to import and build to load."""


def test_counters_and_other_non_weights_beside_the_weights_are_dropped(reference, reference_meta):
    state = {**_official_state(reference), "step": torch.tensor(725000), "epoch": 3, "note": "ema"}
    unet = load_vgen_unet(state, **reference_meta["config"])
    assert not any(name in ("step", "epoch", "note") for name in unet.state_dict())


def test_mismatches_are_named_with_their_counts_and_shapes(reference, reference_meta):
    state = _official_state(reference)
    no_resampler = {k: v for k, v in state.items() if not k.startswith("context_embedding.")}
    dropped = sorted(set(state) - set(no_resampler))
    assert len(dropped) > 20
    with pytest.raises(ValueError) as error:
        load_vgen_unet(no_resampler, **reference_meta["config"])
    converted = sorted(convert_vgen_state_dict(state, unet_config_from_vgen(**reference_meta["config"])))
    missing = [k for k in converted if k.startswith("text_resampler.")]
    assert str(error.value).startswith(f"The checkpoint does not fill this configuration: {len(missing)} parameters "
                                       f"missing {missing[:20]}, 0 left over [].")
    unknown = {**state, **{f"input_blocks.9{i:02d}.0.weight": torch.zeros(1) for i in range(25)}}
    with pytest.raises(ValueError) as error:
        load_vgen_unet(unknown, **reference_meta["config"])
    names = [f"input_blocks.9{i:02d}.0.weight" for i in range(25)]
    assert f"25 keys of the checkpoint belong to no module of this configuration (left over): {names[:20]} ..." in \
        str(error.value)
    for count, more in ((20, ""), (21, " ...")):  # the names are cut after 20
        unknown = {**state, **{f"input_blocks.9{i:02d}.0.weight": torch.zeros(1) for i in range(count)}}
        with pytest.raises(ValueError, match=re.escape(f"{names[:20]}{more}. Check")):
            load_vgen_unet(unknown, **reference_meta["config"])
    one_unknown = {**state, "input_blocks.99.0.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"\['input_blocks.99.0.weight'\]\. Check the UNetSD_HiGen"):
        load_vgen_unet(one_unknown, **reference_meta["config"])
    wrong_shape = {**state, "out.2.bias": torch.zeros(5)}
    with pytest.raises(ValueError, match=r"^conv_out.bias: checkpoint has shape \(5,\), the model expects \(4,\)\.$"):
        load_vgen_unet(wrong_shape, **reference_meta["config"])
    with pytest.raises(FileNotFoundError, match="^VGen checkpoint not found: /nonexistent/higen.pth$"):
        load_vgen_unet("/nonexistent/higen.pth")


def test_every_constructor_argument_reaches_the_model_config():
    config = unet_config_from_vgen(in_dim=8, out_dim=6, dim=64, dim_mult=(1, 3), num_heads=None, head_dim=16,
                                   num_res_blocks=3, attn_scales=(0.5,), dropout=0.25, temporal_attention=False,
                                   y_dim=768, context_embedding_depth=3, num_tokens=7, use_checkpoint=True)
    assert config == dict(
        in_channels=8, out_channels=6, block_out_channels=(64, 192), layers_per_block=3,
        attention_levels=(False, True), attention_head_dim=16, stem_attention_heads=2, temporal_attention=False,
        text_embed_dim=768, cross_attention_dim=1024, use_text_resampler=True, resampler_tokens=7, resampler_depth=3,
        dropout=0.25)
    with torch.device("meta"):
        assert HiGenUNet3DModel(**config).config.stem_attention_heads == 2  # a configuration the model builds from
    with pytest.raises(NotImplementedError,
                       match=r"^use_fps_condition=True: no released HiGen model uses an fps embedding\.$"):
        unet_config_from_vgen(use_fps_condition=True)


def test_the_cli_documents_its_flags_and_names_those_missing(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "\n    python -m higen_core.convert --vgen-checkpoint " in out  # the example keeps its own line
    shown = " ".join(out.split())
    assert shown.startswith("usage: python -m higen_core.convert [-h] --vgen-checkpoint VGEN_CHECKPOINT --base BASE "
                            "--out OUT")
    assert " ".join(convert_module.__doc__.split()) in shown  # the module's text, its example command included
    for flag, text in (("--vgen-checkpoint VGEN_CHECKPOINT", "the released .pth (or a .safetensors state dict)"),
                       ("--base BASE", "diffusers folder or hub id of Stable Diffusion 2.x (text encoder, tokenizer, "
                                       "VAE)"),
                       ("--out OUT", "folder to write the pipeline to")):
        assert f"{flag} {text}" in shown
    with pytest.raises(SystemExit) as done:
        main([])
    assert done.value.code == 2
    assert "the following arguments are required: --vgen-checkpoint, --base, --out" in capsys.readouterr().err


@pytest.fixture
def base(tmp_path):
    """A stand-in for the Stable Diffusion 2.1 base: the converter copies its VAE, text encoder and tokenizer."""
    base = tmp_path / "base"
    tokenizer = tiny_tokenizer()
    tiny_vae().save_pretrained(base / "vae")
    tokenizer.save_pretrained(base / "tokenizer")
    # The reference network reads 64-wide text states.
    encoder = tiny_text_encoder(tokenizer)
    encoder.config.hidden_size = 64
    from transformers import CLIPTextModel

    CLIPTextModel(encoder.config).save_pretrained(base / "text_encoder")
    return base


def test_convert_to_pipeline_takes_the_constructor_arguments(base, tmp_path, reference, reference_meta):
    pipe = convert_to_pipeline(reference / "vgen_unet.safetensors", str(base), str(tmp_path / "out"),
                               **reference_meta["config"])
    assert pipe.unet.config.block_out_channels == (32, 64)
    loaded = HiGenPipeline.from_pretrained(tmp_path / "out")
    assert loaded.settings == released_settings() and type(loaded.tokenizer).__name__ == "CLIPTokenizer"
    # The settings are recorded (not the defaults of a folder without any), and the base's tokenizer is copied.
    assert json.loads((tmp_path / "out" / "model_index.json").read_text())["settings"] == released_settings().to_dict()
    assert loaded.tokenizer.get_vocab() == tiny_tokenizer().get_vocab()
    for name, value in pipe.unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[name], value), name


def test_cli_writes_a_pipeline_folder_that_loads_and_runs(base, tmp_path, reference, reference_meta, monkeypatch,
                                                          capsys):
    monkeypatch.setattr(convert_module, "RELEASED_VGEN_CONFIG",
                        {**convert_module.RELEASED_VGEN_CONFIG, **reference_meta["config"]})
    main(["--vgen-checkpoint", str(reference / "vgen_unet.safetensors"), "--base", str(base),
          "--out", str(tmp_path / "out")])
    assert capsys.readouterr().out == (f"Wrote a HiGen pipeline to {tmp_path / 'out'}. Load it with "
                                       f"HiGenPipeline.from_pretrained({str(tmp_path / 'out')!r}).\n")
    pipe = HiGenPipeline.from_pretrained(tmp_path / "out")
    # The released model's recommended settings travel with the folder: γm 500 in 300-600, γa 1, guidance 12.
    assert pipe.settings == released_settings()
    pipe.set_progress_bar_config(disable=True)
    video = pipe.animate(torch.zeros(1, 4, 8, 12), "a prompt", num_frames=4, num_inference_steps=1,
                         output_type="np")
    assert video.frames.shape == (1, 4, 16, 24, 3)
