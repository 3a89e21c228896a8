"""The shapes world's frozen components: a folder layout that diffusers, transformers and the trainer load, small
files, one token per caption word, a text encoder and an appearance model that tell captions and frames apart."""

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer, CLIPTextModel

from higen_core.shapes import components
from higen_core.pipeline_higen import text_states
from higen_core.shapes.world import BACKGROUNDS, render_video, sample_scene, vocabulary
from higen_core.testing import tiny_tokenizer
from higen_core.training.models import AppearanceEncoder

TRAINING_STEPS = 150  # enough for a small batch to see light on every background


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes-components")
    report = components.build_components(out, steps=3, batch_size=4, measure=8)
    return out, report


def test_folders_load_with_from_pretrained(built):
    out, report = built
    vae = AutoencoderKL.from_pretrained(out / "vae")
    assert len(vae.config.block_out_channels) == 3 and vae.config.latent_channels == 4
    assert vae.config.scaling_factor == pytest.approx(report["vae"]["scaling_factor"])
    frame = components.to_pixels(render_video(sample_scene(0), 1, 64))
    with torch.no_grad():
        assert vae.encode(frame).latent_dist.mode().shape == (1, 4, 16, 16)

    tokenizer = AutoTokenizer.from_pretrained(out / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(out / "text_encoder")
    assert text_encoder.config.hidden_size == 64 and text_encoder.config.vocab_size == len(tokenizer)
    ids = tokenizer(["a red circle moves left quickly on a black background"], padding="max_length",
                    max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    with torch.no_grad():
        assert text_encoder(ids)[0].shape == (1, 77, 64)

    # The trainer's loader: AutoModel + AutoImageProcessor, features per frame.
    assert AutoModel.from_pretrained(out / "appearance").config.model_type == "dinov2"
    assert AutoImageProcessor.from_pretrained(out / "appearance").size["height"] == components.APPEARANCE_SIZE
    encoder = AppearanceEncoder.load(str(out / "appearance"))
    assert encoder.size == (components.APPEARANCE_SIZE,) * 2
    assert encoder(frame.repeat(2, 1, 1, 1)).shape == (2, 64)


def test_files_are_small_and_the_report_is_written(built):
    out, report = built
    assert json.loads((out / "report.json").read_text())["megabytes"] == report["megabytes"]
    assert report["megabytes"]["total"] < 8.0
    assert (out / "reconstructions.png").is_file()
    assert np.isfinite(report["vae"]["reconstruction"]["mse"]) and report["vae"]["scaling_factor"] > 0
    assert set(report["motion_factors"]) >= {"p5", "p50", "p95"}


def test_every_caption_word_is_one_token():
    tokenizer = components.build_tokenizer()
    assert all(len(tokenizer.tokenize(word)) == 1 for word in vocabulary())
    # Words whose pairs an earlier word already merges ("qu" of "quickly") stay whole too.
    assert tiny_tokenizer(vocabulary()).tokenize("square") == ["square</w>"]
    # Anything else still tokenizes, byte by byte.
    assert tokenizer.tokenize("a corgi")[0] == "a</w>" and len(tokenizer.tokenize("a corgi")) > 2


def test_one_word_changes_give_clearly_different_text_states():
    tokenizer = components.build_tokenizer()
    report = components.check_text_encoder(tokenizer, components.build_text_encoder(tokenizer))
    assert set(report) == {"colour", "shape", "motion", "speed", "background"}
    for figures in report.values():
        assert figures["word_cosine"] < 0.8 and figures["states_cosine"] < 0.99
    assert np.mean([figures["word_cosine"] for figures in report.values()]) < 0.6


def test_a_shorter_text_length_gives_the_same_states_for_every_world_caption():
    # --text-length 16: the UNet sees 16 text states instead of 77; the states themselves do not change.
    full = components.build_tokenizer()
    short = components.build_tokenizer(text_length=components.CAPTION_TOKENS)
    captions = [sample_scene(seed).caption for seed in range(3000)]
    assert max(len(ids) for ids in short(captions).input_ids) == components.CAPTION_TOKENS
    longest = max(captions, key=lambda caption: len(caption.split()))
    with torch.no_grad():  # the states the pipeline and the trainer give the UNet
        states = text_states(full, components.build_text_encoder(full), [longest])
        cut = text_states(short, components.build_text_encoder(short), [longest])
    assert cut.shape == (1, components.CAPTION_TOKENS, components.TEXT_WIDTH)
    torch.testing.assert_close(cut, states[:, :components.CAPTION_TOKENS], rtol=0, atol=0)


def test_a_text_length_that_would_cut_captions_is_refused_before_anything_is_built(tmp_path, capsys):
    with pytest.raises(ValueError, match="give 16 to 77"):
        components.build_tokenizer(text_length=components.CAPTION_TOKENS - 1)
    with pytest.raises(SystemExit):
        components.main(["--out", str(tmp_path / "out"), "--text-length", "8"])
    assert "--text-length 8: give 16 to 77" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_negative_number_of_appearance_steps_is_refused_before_anything_is_built(tmp_path, capsys):
    with pytest.raises(SystemExit):
        components.main(["--out", str(tmp_path / "out"), "--appearance-steps", "-5"])
    assert "--appearance-steps -5: give 0" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_appearance_similarity_falls_as_a_shape_changes_colour_or_moves():
    model, _ = components.build_appearance_model()
    report = components.check_appearance(model, count=4)
    colour = report["similarity_to_first_frame"]["changes colour"]
    move = report["similarity_to_first_frame"]["moves right"]
    assert colour[0] == pytest.approx(1.0) and move[0] == pytest.approx(1.0)
    assert np.all(np.diff(colour) <= 1e-3) and colour[-1] < 0.8
    # A move lowers the similarity at once; past the first frames the shape no longer overlaps its start, and a random
    # model's features do not measure how far it went.
    assert max(move[1:]) < 0.95 and np.mean(move[1:]) < 0.9
    assert report["first_to_last_by_motion"].get("stays still", 1.0) == pytest.approx(1.0)


def test_vae_training_is_deterministic():
    weights = []
    for _ in range(2):
        vae = components.build_vae(seed=1)
        components.train_vae(vae, steps=2, seed=1, batch_size=2, log_every=10)
        weights.append(torch.cat([p.detach().flatten() for p in vae.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)


def test_lit_training_frames_mask_the_shapes_not_the_lit_background():
    rng = np.random.default_rng(0)
    frames, masks = components.random_frames(rng, 48, lighting=True)
    named = {tuple(rgb) for rgb in BACKGROUNDS.values()}
    lit = [i for i, f in enumerate(frames) if tuple(f[0, 0]) not in named]
    assert lit  # some frames show a background part-way through a change of light
    for i in lit:
        assert masks[i].mean() < 0.5 and not masks[i][0, 0]


def test_appearance_training_is_deterministic():
    weights = []
    for _ in range(2):
        model, _ = components.build_appearance_model(seed=1, init_range=components.TRAINED_APPEARANCE_INIT_RANGE)
        log = components.train_appearance_model(model, steps=2, seed=1, batch_size=8, pool=16, log_every=1)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)
    assert [entry["step"] for entry in log] == [1, 2] and not model.training


def test_a_trained_appearance_model_sees_a_change_of_light_on_every_background_and_little_else():
    random_model, _ = components.build_appearance_model()
    model, _ = components.build_appearance_model(init_range=components.TRAINED_APPEARANCE_INIT_RANGE)
    components.train_appearance_model(model, steps=TRAINING_STEPS, batch_size=64, pool=256, learning_rate=3e-3)
    before, after = (components.check_appearance(m, count=6) for m in (random_model, model))
    for background, changes in after["first_to_last_by_light"].items():
        # A clip whose light holds reads as (nearly) no change of appearance, whatever its shapes do ...
        assert changes["unlit"] > 0.8, (background, changes)
        for change in set(changes) - {"unlit"}:
            # ... and light lowers the similarity clearly, where the random DINO hardly sees it on black or cyan.
            assert changes[change] < changes["unlit"] - 0.1, (background, change, changes)
    assert before["first_to_last_by_light"]["cyan"]["darker"] > before["first_to_last_by_light"]["cyan"]["unlit"] - 0.1
    for motion in ("moves right", "spins", "stays still"):
        assert after["first_to_last_by_motion"][motion] > 0.95, (motion, after["first_to_last_by_motion"])


def test_a_continued_vae_keeps_its_scaling_factor_and_the_other_components(built, tmp_path):
    out, report = built
    again = components.build_components(tmp_path, steps=2, batch_size=4, measure=8, lighting=True,
                                        vae_from=out / "vae", learning_rate=1e-4)
    assert again["vae"]["from"] == str(out / "vae") and again["vae"]["lighting"]
    assert AutoencoderKL.from_pretrained(tmp_path / "vae").config.scaling_factor == report["vae"]["scaling_factor"]
    # The text encoder and the DINO are rebuilt from the seed: the same weights, so models trained with them carry over.
    for name in ("text_encoder", "appearance"):
        assert (tmp_path / name / "model.safetensors").read_bytes() == (out / name / "model.safetensors").read_bytes()


def test_continuing_a_missing_vae_says_where_to_point(tmp_path, capsys):
    with pytest.raises(SystemExit):
        components.main(["--out", str(tmp_path / "out"), "--vae-from", str(tmp_path / "nothing")])
    assert "no VAE there" in capsys.readouterr().err and not (tmp_path / "out").exists()
