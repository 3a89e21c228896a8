"""LoRA training (`--lora-rank N`): only the adapters learn, the base stays bit-identical, a resumed run equals an
uninterrupted one, and DIR/lora loads into a fresh pipeline to the model the run trained."""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from higen_core.lora import LORA_WEIGHT_NAME, lora_config
from higen_core.pipeline_higen import default_scheduler
from higen_core.testing import tiny_pipeline, tiny_train_config, tiny_unet
from higen_core.train import main
from higen_core.training.checkpoint import latest_checkpoint
from higen_core.training.data import VideoClipDataset, collate_skipping
from higen_core.training.latents import encode_pixels, encode_text, higen_conditions, sample_latents
from higen_core.training.models import load_components
from higen_core.training.objective import diffusion_loss

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "higen_core" / "configs" / "train-tiny.yaml"
TINY_DATA = REPO / "assets" / "tiny-data"


def lora_args(out: Path, **fields) -> list[str]:
    values = {"output_dir": out, "lora_rank": 4, "lora_alpha": 8, "max_train_steps": 4, "checkpointing_steps": 2, "sample_every": 0,
              "progress_bar": "false", "lr_warmup_steps": 0, "learning_rate": 1e-2,
              "video_data": TINY_DATA / "videos.jsonl", "image_data": TINY_DATA / "images.jsonl", **fields}
    return ["--config", str(TINY)] + [item for k, v in values.items() for item in (f"--{k}", str(v))]


def test_lora_steps_lower_the_loss():
    config = tiny_train_config(num_frames=8)
    components = load_components(config)
    unet = components.unet
    unet.requires_grad_(False)
    unet.add_adapter(lora_config(4))
    batch = collate_skipping([VideoClipDataset(TINY_DATA / "videos.jsonl", 8, 8, 16, 16)[0]])
    width = unet.config.appearance_width
    moments, rows = encode_pixels(components, batch["pixel_values"], width)
    latents = sample_latents(moments, components.vae.config.scaling_factor)
    conditions = higen_conditions(latents, rows, width)
    text = encode_text(components, batch["captions"], torch.device("cpu"))
    optimizer = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(15):
        loss = diffusion_loss(unet, latents, conditions, text, default_scheduler(), 0.1,
                              torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_a_lora_run_keeps_the_base_resumes_exactly_and_saves_a_loadable_adapter(tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert main(lora_args(straight)) == 0
    assert main(lora_args(interrupted, max_train_steps=2)) == 0
    assert main(lora_args(interrupted, resume="latest")) == 0
    a, b = (load_file(run / "lora" / LORA_WEIGHT_NAME) for run in (straight, interrupted))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (interrupted / "logs/train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4] and not (straight / "final").exists()

    # The checkpoint holds the whole network: its base weights are the starting ones, bit for bit.
    state = load_file(latest_checkpoint(straight) / "model.safetensors")
    base = tiny_unet(0).state_dict()
    for name, value in state.items():
        if "lora_" not in name:
            assert torch.equal(value, base[name.replace(".base_layer", "")]), name
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in state.items())  # the adapters did learn

    # DIR/lora in a fresh pipeline is the network the run trained, at its alpha.
    trained = tiny_pipeline()
    trained.unet.add_adapter(lora_config(4, 8))
    trained.unet.load_state_dict(state)
    loaded = tiny_pipeline()
    loaded.load_lora_weights(straight / "lora")
    run = lambda pipe: pipe.animate(torch.zeros(1, 4, 8, 8), "a red circle moves left", num_frames=4,
                                    num_inference_steps=2, guidance_scale=3.0, output_type="latent",
                                    latents=torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(run(loaded).latents, run(trained).latents, rtol=0, atol=1e-5)


def test_lora_settings_are_checked_before_anything_loads(tmp_path, capsys):
    assert main(lora_args(tmp_path / "a", lora_rank=-1)) == 2
    assert "lora_rank: must be 0 (full training) or a rank" in capsys.readouterr().err
    assert main(lora_args(tmp_path / "b", use_ema="true")) == 2
    assert "use_ema: EMA is for full training" in capsys.readouterr().err
