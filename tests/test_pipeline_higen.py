import logging
import re

import numpy as np
import PIL.Image
import pytest
import torch

from higen_core import HiGenPipeline, default_scheduler
from higen_core.testing import tiny_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_reproduces_the_official_two_stage_sample(reference_unet, reference_cases):
    c = {k.split(".", 1)[1]: v for k, v in reference_cases.items() if k.startswith("sample.")}
    pipe = HiGenPipeline(unet=reference_unet, scheduler=default_scheduler())
    pipe.set_progress_bar_config(disable=True)
    torch.testing.assert_close(pipe.scheduler.alphas_cumprod, c["alphas_cumprod"], atol=1e-6, rtol=0)
    common = dict(prompt_embeds=c["y"], negative_prompt_embeds=c["zero_y"], num_inference_steps=4,
                  guidance_scale=12.0, output_type="latent")
    prior = pipe.generate_prior(latents=c["noise_spatial"][:, :, 0], **common)
    torch.testing.assert_close(prior.latents, c["prior"], atol=1e-3, rtol=0)
    video = pipe.animate(prior, latents=c["noise_temporal"], motion_factor=500, appearance_factor=1.0,
                         num_frames=32, **common)
    torch.testing.assert_close(video.latents, c["video"], atol=1e-3, rtol=0)


def test_prior_then_several_motion_prompts_in_one_batch(pipe):
    prior = pipe.generate_prior("a red circle", num_images_per_prompt=2, num_inference_steps=2, generator=_gen())
    assert prior.latents.shape == (2, 4, 8, 8) and len(prior.images) == 2
    assert isinstance(prior.images[0], PIL.Image.Image) and prior.images[0].size == (16, 16)
    one = prior.latents[:1]
    prompts = ["a red circle moves left", "a red circle moves right"]
    noise = torch.randn(2, 4, 8, 8, 8, generator=_gen(1))
    batched = pipe.animate(one, prompts, num_inference_steps=2, latents=noise, motion_factor=50)
    assert len(batched.frames) == 2 and len(batched.frames[0]) == 8
    for i, prompt in enumerate(prompts):
        alone = pipe.animate(one, prompt, num_inference_steps=2, latents=noise[i:i + 1], motion_factor=50,
                             output_type="latent")
        # Same math; only float summation order differs between batch sizes (amplified by guidance 12).
        torch.testing.assert_close(alone.latents, batched.latents[i:i + 1], atol=1e-3, rtol=0)


def test_each_prompt_is_encoded_once(pipe, monkeypatch):
    pipe._text_cache.clear()
    calls = []
    original = pipe.text_encoder.forward
    monkeypatch.setattr(pipe.text_encoder, "forward", lambda ids, *a, **k: calls.append(len(ids)) or original(ids))
    pipe("a blue square", num_inference_steps=1, num_frames=4, output_type="latent")
    pipe.animate(torch.zeros(1, 4, 8, 8), "a blue square", num_inference_steps=1, num_frames=4, output_type="latent")
    assert sum(calls) == 2  # the prompt and the empty negative prompt, once each


def test_guidance_in_one_batch_equals_two_passes(pipe):
    text, empty = pipe.encode_prompt("a cat", do_classifier_free_guidance=True)
    noise = torch.randn(1, 4, 8, 8, generator=_gen(2))
    scheduler = default_scheduler()
    scheduler.set_timesteps(2)
    latents = noise.clone()[:, :, None]
    conditions = dict(spatial_prior=torch.zeros(1, 4, 8, 8), motion_factors=torch.zeros(1),
                      appearance_matrix=torch.ones(1, 1, 8))
    with torch.no_grad():
        for t in scheduler.timesteps:
            cond = pipe.unet(latents, t, text, **conditions).sample
            uncond = pipe.unet(latents, t, empty, **conditions).sample
            latents = scheduler.step(uncond + 12.0 * (cond - uncond), t, latents).prev_sample
    ours = pipe.generate_prior(prompt_embeds=text, negative_prompt_embeds=empty, latents=noise, num_inference_steps=2,
                               output_type="latent")
    torch.testing.assert_close(ours.latents, latents[:, :, 0], atol=1e-3, rtol=0)


def test_same_seed_same_video_and_offset_noise(pipe):
    a = pipe("a dog", num_inference_steps=2, num_frames=4, generator=_gen(3), output_type="latent")
    b = pipe("a dog", num_inference_steps=2, num_frames=4, generator=_gen(3), output_type="latent")
    assert torch.equal(a.latents, b.latents) and torch.equal(a.prior_latents, b.prior_latents)
    # The video noise carries the official offset noise: one extra draw per frame and channel.
    noise = pipe.prepare_latents((1, 4, 3, 8, 8), _gen(4), offset_noise=True, device="cpu")
    generator = _gen(4)
    plain = torch.randn(1, 4, 3, 8, 8, generator=generator)
    offset = torch.randn(1, 4, 3, 1, 1, generator=generator)
    torch.testing.assert_close(noise, plain + 0.1 * offset)


@pytest.mark.parametrize("output_type, check", [
    ("np", lambda f: isinstance(f, np.ndarray) and f.shape == (1, 4, 16, 16, 3)),
    ("pt", lambda f: isinstance(f, torch.Tensor) and f.shape == (1, 4, 3, 16, 16)),
    ("pil", lambda f: len(f) == 1 and len(f[0]) == 4 and f[0][0].size == (16, 16)),
    ("latent", lambda f: f.shape == (1, 4, 4, 8, 8)),
])
def test_output_types(pipe, output_type, check):
    out = pipe.animate(torch.zeros(1, 4, 8, 8), "x", num_frames=4, num_inference_steps=1, output_type=output_type)
    assert check(out.frames)


def test_chunked_decoding_matches_whole(pipe):
    latents = torch.randn(1, 4, 5, 8, 8, generator=_gen(5))
    whole = pipe.decode_latents(latents, 5)
    torch.testing.assert_close(pipe.decode_latents(latents, chunk_size=2), whole, atol=1e-5, rtol=0)
    # Each frame is the VAE's decoding of the unscaled latent.
    with torch.no_grad():
        frame = pipe.vae.decode(latents[:, :, 3] / pipe.vae.config.scaling_factor).sample
    torch.testing.assert_close(whole[:, :, 3], frame, atol=1e-5, rtol=0)


def test_own_image_becomes_a_prior(pipe):
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    prior = pipe.encode_prior_image(image)
    assert prior.shape == (1, 4, 8, 8)
    assert torch.equal(prior, pipe.encode_prior_image(image))
    assert pipe.animate(prior, "x", num_frames=3, num_inference_steps=1, output_type="latent").latents.shape[2] == 3


def test_step_callback_and_interrupt(pipe):
    seen = []

    def callback(p, i, t, tensors):
        seen.append(i)
        if i == 1:
            p._interrupt = True
        return tensors

    pipe.animate(torch.zeros(1, 4, 8, 8), "x", num_frames=3, num_inference_steps=5, output_type="latent",
                 callback_on_step_end=callback)
    assert seen == [0, 1]


def test_step_callback_sees_the_prediction_of_the_clean_latents(pipe):
    # What a live preview shows, and what a stopped job keeps: x0 as DDIM predicts it from the step's v-prediction.
    seen = []

    def callback(p, i, t, tensors):
        seen.append((int(t), tensors["latents"].clone(), tensors["denoised"].clone()))
        return {}

    out = pipe.animate(torch.zeros(1, 4, 8, 8), "x", num_frames=3, num_inference_steps=3, output_type="latent",
                       generator=_gen(0), callback_on_step_end=callback,
                       callback_on_step_end_tensor_inputs=["latents", "denoised"])
    assert len(seen) == 3 and all(d.shape == (1, 4, 3, 8, 8) and torch.isfinite(d).all() for _, _, d in seen)
    # At the last step DDIM's update is the clean prediction renoised to the first timestep's tiny noise level.
    last_t, latents, denoised = seen[-1]
    assert torch.equal(latents, out.latents) and (latents - denoised).abs().max() < 0.1 * latents.abs().max()
    assert not torch.allclose(seen[0][2], denoised)  # it sharpens as the steps go


def test_latent_only_pipeline_without_vae_or_text_encoder():
    full = tiny_pipeline()
    pipe = HiGenPipeline(unet=full.unet, scheduler=default_scheduler())
    text = torch.randn(1, 77, 32)
    video = pipe.animate(torch.zeros(1, 4, 8, 8), prompt_embeds=text, negative_prompt_embeds=torch.zeros_like(text),
                         num_frames=3, num_inference_steps=1, output_type="latent")
    assert video.latents.shape == (1, 4, 3, 8, 8)
    with pytest.raises(ValueError, match="no VAE"):
        pipe.animate(torch.zeros(1, 4, 8, 8), prompt_embeds=text, num_frames=3, num_inference_steps=1)
    with pytest.raises(ValueError, match="prompt_embeds"):
        pipe.animate(torch.zeros(1, 4, 8, 8), "a prompt", num_frames=3, num_inference_steps=1, output_type="latent")


def test_feature_caching_preset(pipe, monkeypatch):
    # Interval 1 is exact; interval N runs the whole network on steps 0, N, 2N, ... and reuses deep features between,
    # which changes the result a little (an opt-in fast preset).
    args = dict(prompt="a red circle moves left", num_frames=4, num_inference_steps=5, output_type="latent")
    prior = torch.randn(1, 4, 8, 8, generator=_gen(1))
    exact = pipe.animate(prior, generator=_gen(), **args).latents
    torch.testing.assert_close(pipe.animate(prior, generator=_gen(), feature_cache_interval=1, **args).latents, exact)

    calls, forward = [], pipe.unet.forward
    monkeypatch.setattr(pipe.unet, "forward",
                        lambda *a, **k: calls.append(k["deep_features"] is not None) or forward(*a, **k))
    cached = pipe.animate(prior, generator=_gen(), feature_cache_interval=2, **args).latents
    prior_cached = pipe.generate_prior("a red circle", num_inference_steps=3, feature_cache_interval=3,
                                       output_type="latent").latents
    assert calls == [False, True, False, True, False] + [False, True, True]
    assert torch.isfinite(cached).all() and torch.isfinite(prior_cached).all()
    difference = (cached - exact).abs().max().item()
    assert 0 < difference < exact.abs().max().item()
    with pytest.raises(ValueError, match="feature_cache_interval"):
        pipe.animate(prior, feature_cache_interval=0, **args)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(prompt=3), TypeError, "prompt"),
    (dict(prompt=None), ValueError, "prompt"),
    (dict(prompt="x", prompt_embeds=torch.zeros(1, 77, 32)), ValueError, "not both"),
    (dict(motion_factor=-1), ValueError, "motion_factor"),
    (dict(motion_factor=float("nan")), ValueError, "motion_factor"),
    (dict(motion_factor=[10, 20, 30]), ValueError, "one per video"),
    (dict(appearance_factor=1.5), ValueError, "appearance_factor"),
    (dict(num_frames=1), ValueError, "num_frames"),
    (dict(num_frames=9), ValueError, "num_frames"),
    (dict(prior=torch.zeros(1, 3, 8, 8)), ValueError, "prior"),
    (dict(prior=torch.full((1, 4, 8, 8), float("nan"))), ValueError, "NaN"),
    (dict(latents=torch.full((1, 4, 4, 8, 8), float("nan"))), ValueError, "NaN"),
    (dict(latents=torch.zeros(1, 4, 5, 8, 8)), ValueError, "shape"),
    (dict(num_inference_steps=0), ValueError, "num_inference_steps"),
    (dict(output_type="gif"), ValueError, "output_type"),
    (dict(prompt=["a", "b"], prior=torch.zeros(3, 4, 8, 8)), ValueError, "priors"),
])
def test_invalid_inputs_get_one_precise_error(pipe, kwargs, error, message):
    args = dict(prior=torch.zeros(1, 4, 8, 8), prompt="x", num_frames=4, num_inference_steps=1, output_type="latent")
    args.update(kwargs)
    with pytest.raises(error, match=message):
        pipe.animate(**args)


def test_motion_factor_outside_the_trained_range_warns(pipe, caplog):
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.enable_propagation()
    with caplog.at_level(logging.WARNING):
        pipe.animate(torch.zeros(1, 4, 8, 8), "x", motion_factor=500, num_frames=3, num_inference_steps=1,
                     output_type="latent")
    assert "outside" in caplog.text


def test_save_and_load_the_pipeline(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    loaded = HiGenPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    a = pipe("x", num_frames=3, num_inference_steps=1, generator=_gen(6), output_type="latent")
    b = loaded("x", num_frames=3, num_inference_steps=1, generator=_gen(6), output_type="latent")
    torch.testing.assert_close(a.latents, b.latents)


def test_runs_in_bfloat16():
    pipe = tiny_pipeline()
    pipe.to(torch.bfloat16)
    video = pipe("x", num_frames=3, num_inference_steps=2, output_type="np", generator=_gen(7))
    assert video.frames.shape == (1, 3, 16, 16, 3) and np.isfinite(video.frames).all()


def test_a_negative_prompt_steers_both_steps(pipe):
    """`negative_prompt` through the public call is the same as its embeddings given to each step, and changes both
    the prior and the video."""
    common = dict(num_inference_steps=2, guidance_scale=3.0, output_type="latent")
    steered = pipe("a dog", negative_prompt="a cat", num_frames=4, generator=_gen(5), **common)
    plain = pipe("a dog", num_frames=4, generator=_gen(5), **common)
    assert not torch.allclose(steered.prior_latents, plain.prior_latents, atol=1e-3)
    text, negative = pipe.encode_prompt("a dog", "a cat")
    generator = _gen(5)
    prior = pipe.generate_prior(prompt_embeds=text, negative_prompt_embeds=negative, generator=generator, **common)
    video = pipe.animate(prior, prompt_embeds=text, negative_prompt_embeds=negative, num_frames=4,
                         generator=generator, **common)
    torch.testing.assert_close(prior.latents, steered.prior_latents)
    torch.testing.assert_close(video.latents, steered.latents)
    # The video alone feels it too: the same prior and noise with the empty negative prompt give another video.
    noise = torch.randn(1, 4, 4, 8, 8, generator=_gen(6))
    with_cat = pipe.animate(prior, "a dog", "a cat", latents=noise, num_frames=4, **common)
    without = pipe.animate(prior, "a dog", latents=noise, num_frames=4, **common)
    assert not torch.allclose(with_cat.latents, without.latents, atol=1e-3)


def test_animate_draws_its_noise_with_the_official_offset(pipe):
    prior = torch.randn(1, 4, 8, 8, generator=_gen(7))
    common = dict(num_frames=3, num_inference_steps=2, guidance_scale=3.0, output_type="latent")
    drawn = pipe.animate(prior, "a dog runs", generator=_gen(8), **common)
    generator = _gen(8)
    plain = torch.randn(1, 4, 3, 8, 8, generator=generator)
    offset = torch.randn(1, 4, 3, 1, 1, generator=generator)
    given = pipe.animate(prior, "a dog runs", latents=plain + 0.1 * offset, **common)
    torch.testing.assert_close(drawn.latents, given.latents)


def test_one_factor_per_video_equals_one_call_each(pipe):
    """Lists of γm and γa give each video of a batch its own factors, exactly as separate calls do."""
    prior = torch.randn(1, 4, 8, 8, generator=_gen(9))
    noise = torch.randn(2, 4, 4, 8, 8, generator=_gen(10))
    common = dict(num_frames=4, num_inference_steps=2, guidance_scale=3.0, output_type="latent")
    motion, appearance = [5.0, 80.0], [0.0, 1.0]
    batch = pipe.animate(prior, ["a dog runs"] * 2, motion_factor=motion, appearance_factor=appearance,
                         latents=noise, **common)
    for i in range(2):
        alone = pipe.animate(prior, "a dog runs", motion_factor=motion[i], appearance_factor=appearance[i],
                             latents=noise[i:i + 1], **common)
        torch.testing.assert_close(batch.latents[i:i + 1], alone.latents, atol=1e-4, rtol=0)
    # Each factor alone changes the video (so the equality above is not that of factors without effect).
    for factors in (dict(motion_factor=motion, appearance_factor=0.5),
                    dict(motion_factor=40.0, appearance_factor=appearance)):
        pair = pipe.animate(prior, ["a dog runs"] * 2, latents=noise[:1].expand(2, -1, -1, -1, -1), **factors,
                            **common)
        assert not torch.allclose(pair.latents[0], pair.latents[1], atol=1e-4)


VALID = dict(prompt="a dog", negative_prompt=None, prompt_embeds=None, negative_prompt_embeds=None,
             num_inference_steps=1, guidance_scale=3.0, output_type="latent",
             callback_on_step_end_tensor_inputs=["latents"], feature_cache_interval=1)
EMBEDS = torch.zeros(1, 77, 32)


@pytest.mark.parametrize("change, error, message", [
    (dict(prompt=None), ValueError, "Give a `prompt` (a string or a list of strings) or `prompt_embeds`."),
    (dict(prompt_embeds=EMBEDS), ValueError, "Give either `prompt` or `prompt_embeds`, not both."),
    (dict(prompt=[]), TypeError, "`prompt` must be a string or a non-empty list of strings; got list."),
    (dict(prompt=["a", 3]), TypeError, "`prompt` must be a string or a non-empty list of strings; got list."),
    (dict(negative_prompt=7), TypeError, "`negative_prompt` must be a string or a non-empty list of strings; got int."),
    (dict(negative_prompt="x", negative_prompt_embeds=EMBEDS), ValueError,
     "Give either `negative_prompt` or `negative_prompt_embeds`, not both."),
    (dict(prompt=None, prompt_embeds=torch.zeros(77, 32)), ValueError,
     "`prompt_embeds` must be (N, L, D); got shape (77, 32)."),
    (dict(prompt=None, prompt_embeds=EMBEDS, negative_prompt_embeds=torch.zeros(1, 77, 16)), ValueError,
     "`prompt_embeds` (1, 77, 32) and `negative_prompt_embeds` (1, 77, 16) must have the same shape."),
    (dict(prompt=["a", "b", "c"], negative_prompt=["x", "y"]), ValueError,
     "2 negative prompts for 3 prompts: give 1 or one each."),
    (dict(num_inference_steps=0), ValueError, "`num_inference_steps` must be a positive integer; got 0."),
    (dict(feature_cache_interval=0), ValueError, "`feature_cache_interval` must be a positive integer"),
    (dict(guidance_scale=-0.5), ValueError, "`guidance_scale` must be a number >= 0; got -0.5."),
    (dict(guidance_scale=float("inf")), ValueError, "`guidance_scale` must be a number >= 0; got inf."),
    (dict(guidance_scale="3"), ValueError, "`guidance_scale` must be a number >= 0; got '3'."),
    (dict(output_type="gif"), ValueError, "`output_type` must be one of ('pil', 'np', 'pt', 'latent'); got 'gif'."),
    (dict(callback_on_step_end_tensor_inputs=["latents", "noise"]), ValueError,
     "Step callbacks can receive ['latents', 'denoised', 'prompt_embeds', 'negative_prompt_embeds']; not ['noise']."),
])
def test_each_mistake_gets_its_own_message(pipe, change, error, message):
    with pytest.raises(error, match="^" + re.escape(message)):
        pipe.check_inputs(**{**VALID, **change})


def test_sizes_prompts_and_factors_as_the_calls_take_them(pipe):
    with pytest.raises(ValueError, match=r"^height and width must be multiples of 2; got 17x16\.$"):
        pipe.generate_prior("x", height=17, width=16, num_inference_steps=1, output_type="latent")
    with pytest.raises(ValueError, match=r"^prompt must be given\.$"):
        pipe.encode_prompt(None)
    text_free = HiGenPipeline(unet=pipe.unet, scheduler=default_scheduler())
    with pytest.raises(ValueError, match=r"^This pipeline has no text encoder/tokenizer: pass `prompt_embeds` "
                                         r"instead of prompts\.$"):
        text_free.encode_prompt("x")
    # Factors as numpy or torch arrays: one video per value, as with a list.
    prior, noise = torch.zeros(1, 4, 8, 8), torch.randn(2, 4, 3, 8, 8, generator=_gen(8))
    kwargs = dict(num_frames=3, num_inference_steps=1, output_type="latent", latents=noise)
    listed = pipe.animate(prior, ["x", "x"], motion_factor=[10.0, 20.0], **kwargs).latents
    for values in (np.array([10.0, 20.0]), torch.tensor([10.0, 20.0])):
        assert torch.equal(pipe.animate(prior, ["x", "x"], motion_factor=values, **kwargs).latents, listed)


@pytest.mark.parametrize("change", [
    dict(), dict(prompt=["a"]), dict(prompt=["a", "b"], negative_prompt=["x"]),
    dict(prompt=["a", "b"], negative_prompt=["x", "y"]), dict(prompt=("a", "b")), dict(guidance_scale=0),
    dict(guidance_scale=0.5), dict(prompt=None, prompt_embeds=EMBEDS, negative_prompt_embeds=EMBEDS),
    dict(callback_on_step_end_tensor_inputs=None), dict(feature_cache_interval=3),
])
def test_what_is_allowed_passes(pipe, change):
    pipe.check_inputs(**{**VALID, **change})


def test_a_pipeline_without_a_vae_says_how_to_get_latents():
    pipe = HiGenPipeline(unet=tiny_pipeline().unet, scheduler=default_scheduler())
    with pytest.raises(ValueError, match=re.escape("This pipeline has no VAE to decode with: use "
                                                   "output_type='latent' or load a VAE.")):
        pipe.check_inputs(**{**VALID, "prompt": None, "prompt_embeds": EMBEDS, "output_type": "pil"})


def test_the_factors_limits(pipe, caplog):
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.enable_propagation()
    with caplog.at_level(logging.WARNING):
        pipe.check_factors([0, 100, 10000], [0.0, 1.0, 0])  # the range's ends warn nothing; 10000 warns
    assert caplog.text.count("outside") == 1 and "motion_factor 10000 is outside 0-100" in caplog.text
    for gamma in (-0.1, 10000.5, float("nan"), "5"):
        message = f"motion_factor must be a number in [0, 10000]; got {gamma!r}."
        with pytest.raises(ValueError, match=re.escape(message)):
            pipe.check_factors([gamma], [0.5])
    for gamma in (-0.1, 1.01, "1"):
        message = f"appearance_factor must be a number in [0, 1]; got {gamma!r}."
        with pytest.raises(ValueError, match=re.escape(message)):
            pipe.check_factors([10], [gamma])


def test_encode_prompt_pairs_each_prompt_with_its_negative(pipe):
    from higen_core.pipeline_higen import text_states

    def states(prompts):
        return text_states(pipe.tokenizer, pipe.text_encoder, prompts)

    text, negative = pipe.encode_prompt(["a cat", "a dog"], "blurry")
    torch.testing.assert_close(text, states(["a cat", "a dog"]))
    torch.testing.assert_close(negative, states(["blurry", "blurry"]))  # one negative prompt serves every prompt
    _, negatives = pipe.encode_prompt(["a cat", "a dog"], ["blurry", "dark"])
    torch.testing.assert_close(negatives, states(["blurry", "dark"]))
    # Given text states: the negative prompt is encoded for each of them, or the given negative states are kept.
    given = torch.randn(3, 77, 32, generator=_gen(6))
    text, negative = pipe.encode_prompt(None, "blurry", prompt_embeds=given)
    assert torch.equal(text, given) and torch.equal(negative, states(["blurry"] * 3))
    _, empty = pipe.encode_prompt(None, prompt_embeds=given)
    torch.testing.assert_close(empty, states([""] * 3))  # the official default: the empty prompt
    kept = torch.randn(3, 77, 32, generator=_gen(7))
    assert torch.equal(pipe.encode_prompt(None, prompt_embeds=given, negative_prompt_embeds=kept)[1], kept)
    # Without guidance there is no negative at all.
    assert pipe.encode_prompt("a cat", "blurry", do_classifier_free_guidance=False)[1] is None


def test_the_text_cache_keeps_the_latest_prompts(pipe, monkeypatch):
    from higen_core import pipeline_higen

    monkeypatch.setattr(pipeline_higen, "_TEXT_CACHE_SIZE", 3)
    pipe._text_cache.clear()
    for prompt in ["a", "b", "c", "a", "d"]:  # "a" used again: "b" is now the oldest
        pipe.encode_prompt(prompt, do_classifier_free_guidance=False)
    assert list(pipe._text_cache) == ["c", "a", "d"]
    pipe._text_cache.clear()


def test_a_step_callback_sees_what_it_asked_for_and_may_replace_the_latents(pipe):
    text, negative = pipe.encode_prompt("x")
    seen = []

    def callback(p, i, t, tensors):
        seen.append(tensors)
        return {"latents": torch.zeros_like(tensors["latents"])} if i == 2 else {}

    out = pipe.animate(torch.zeros(1, 4, 8, 8), "x", num_frames=3, num_inference_steps=3, output_type="latent",
                       callback_on_step_end=callback,
                       callback_on_step_end_tensor_inputs=["latents", "prompt_embeds", "negative_prompt_embeds"])
    assert len(seen) == 3 and all(set(s) == {"latents", "prompt_embeds", "negative_prompt_embeds"} for s in seen)
    assert torch.equal(seen[0]["prompt_embeds"], text) and torch.equal(seen[0]["negative_prompt_embeds"], negative)
    assert not out.latents.any()  # the last step's latents, as the callback replaced them
    # An interrupted call leaves the next one free to run every step.
    steps = []

    def stop_at_once(p, i, t, tensors):
        steps.append(i)
        p._interrupt = True
        return {}

    pipe.animate(torch.zeros(1, 4, 8, 8), "x", num_frames=3, num_inference_steps=3, output_type="latent",
                 callback_on_step_end=stop_at_once)
    assert steps == [0]
    pipe.animate(torch.zeros(1, 4, 8, 8), "x", num_frames=3, num_inference_steps=3, output_type="latent",
                 callback_on_step_end=lambda p, i, t, tensors: steps.append(i) or {})
    assert steps == [0, 0, 1, 2]


def test_the_vae_sets_the_pixel_size_of_a_latent():
    from diffusers import AutoencoderKL

    four_levels = AutoencoderKL(block_out_channels=(8, 8, 8, 8), norm_num_groups=8, latent_channels=4,
                                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    assert HiGenPipeline(vae=four_levels, unet=tiny_pipeline().unet, scheduler=default_scheduler()).vae_scale_factor == 8
    assert HiGenPipeline(unet=tiny_pipeline().unet, scheduler=default_scheduler()).vae_scale_factor == 8  # SD's, unknown
