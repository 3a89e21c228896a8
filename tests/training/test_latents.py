"""The latent cache: each usable sample encoded once, by name, in order; reused while its fingerprint holds, built
again when it changes."""

import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import Dataset

from higen_core.testing import tiny_train_config
from higen_core.training.data import SkipStats
from higen_core.training.latents import build_latent_cache, collate_cached, encode_pixels
from higen_core.training.models import load_components


class Samples(Dataset):
    """A map-style dataset of given samples (None: one the data layer skipped)."""

    def __init__(self, samples):
        self.samples, self.stats = samples, SkipStats()

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


@pytest.fixture(scope="module")
def components():
    return load_components(tiny_train_config())


def clips(count, seed=0):
    pixels = torch.rand(count, 4, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return pixels, [{"pixel_values": pixels[i], "caption": f"clip {i}", "path": f"clip{i}.mp4"} for i in range(count)]


def test_the_cache_holds_each_usable_sample_encoded_once(tmp_path, components):
    pixels, samples = clips(3)
    build = lambda dataset, fingerprint: build_latent_cache(Accelerator(cpu=True), dataset, tmp_path / "cache",
                                                            fingerprint, components, appearance_width=6,
                                                            batch_size=1, num_workers=0)
    cache = build(Samples([None, samples[0], None, samples[1], samples[2]]), {"frames": 4, "size": 16})
    assert cache.names == [f"000-{i:08d}.safetensors" for i in range(3)]
    assert [cache[i]["caption"] for i in range(3)] == ["clip 0", "clip 1", "clip 2"]
    moments, rows = encode_pixels(components, pixels, 6)
    for i in range(3):
        assert torch.equal(cache[i]["moments"], moments[i]) and torch.equal(cache[i]["appearance"], rows[i])
    assert cache[0]["appearance"].shape == (4, 6)  # a row of the appearance matrix per frame, at the model's width
    batch = collate_cached([cache[2]])
    assert batch["moments"].shape == (1, 8, 4, 8, 8) and batch["appearance"].shape == (1, 4, 6)
    assert batch["captions"] == ["clip 2"] and batch["paths"] == [cache.names[2]]

    # The same fingerprint, however its keys are ordered, finds the cache complete: nothing is encoded again.
    built = (tmp_path / "cache" / cache.names[0]).stat().st_mtime_ns
    again = build(Samples([]), {"size": 16, "frames": 4})
    assert again.names == cache.names and (tmp_path / "cache" / cache.names[0]).stat().st_mtime_ns == built
    # Another fingerprint (other frames, another VAE, other data) builds it anew in the same folder.
    _, others = clips(2, seed=1)
    rebuilt = build(Samples(others[1:]), {"frames": 8, "size": 16})
    assert rebuilt.names == ["000-00000000.safetensors"] and rebuilt[0]["caption"] == "clip 1"
    with pytest.raises(ValueError, match="is empty: every sample was skipped while building it"):
        build(Samples([None]), {"frames": 2})
