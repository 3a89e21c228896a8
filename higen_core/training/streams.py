# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""From the data fields to endless, resumable batch streams: the sources of each kind, their datasets, and a stream
whose position (epoch, batches taken) says exactly where it is."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from .config import ConfigError, TrainConfig, TrainingError
from .data import ImageTextDataset, ManifestError, SkipStats, TarShardDataset, VideoClipDataset
from .objective import KINDS


def resolve_data(config: TrainConfig) -> dict[str, dict[str, list[str]]]:
    """{kind: {"manifests": [...], "shards": [...]}}. A folder stands for its videos.jsonl / images.jsonl (the layout
    `python -m higen_core.shapes` writes) when it has one. Paths stay as given: relative ones are relative to the
    working directory."""
    data = {kind: {"manifests": list(getattr(config, f"{kind}_data")),
                   "shards": list(getattr(config, f"{kind}_shards"))} for kind in KINDS}
    for kind in KINDS:
        data[kind]["manifests"] = [str(Path(p) / f"{kind}s.jsonl") if (Path(p) / f"{kind}s.jsonl").is_file() else p
                                   for p in data[kind]["manifests"]]
    return data


@contextmanager
def manifest_errors(field: str):
    """A manifest that cannot be read (malformed, missing, listing nothing) as a ConfigError of the field naming it."""
    try:
        yield
    except (ManifestError, FileNotFoundError) as error:
        raise ConfigError(field, str(error)) from None


def build_dataset(kind: str, sources: dict[str, list[str]], config: TrainConfig, stats: SkipStats,
                  share: tuple[int, int] | None = None) -> Dataset:
    """`share`: (index, count) of this process among those reading this kind's shards (default: all processes).
    Reads the manifests: a bad one raises ConfigError."""
    frames, size = config.num_frames, (config.height, config.width)
    if sources["shards"]:
        rank, world_size = share if share is not None else (None, None)
        with manifest_errors(f"{kind}_shards"):
            return TarShardDataset(sources["shards"], kind, frames, config.fps, *size, stats=stats, seed=config.seed,
                                   rank=rank, world_size=world_size)
    with manifest_errors(f"{kind}_data"):
        if kind == "video":
            return VideoClipDataset(sources["manifests"], frames, config.fps, *size, stats=stats, seed=config.seed)
        return ImageTextDataset(sources["manifests"], *size, stats=stats)


class BatchStream:
    """Endless batches of one dataset for this process. The order of epoch e is fixed by (seed, e), so a position
    (epoch, batches taken) says exactly where the stream is, and a stream built at a position goes on from there:
    that is how a resumed run sees the data an uninterrupted one would."""

    def __init__(self, dataset: Dataset, batch_size: int, collate_fn, num_workers: int, seed: int,
                 shard: tuple[int, int], position: tuple[int, int] = (0, 0)):
        self.dataset, self.batch_size, self.collate_fn, self.num_workers = dataset, batch_size, collate_fn, num_workers
        self.seed, self.shard = seed, shard
        self.epoch, self.batches = position
        self.stats = getattr(dataset, "stats", SkipStats())
        self._iterator = self._start()

    @property
    def position(self) -> tuple[int, int]:
        return self.epoch, self.batches

    def _start(self):
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        rank, world = self.shard
        indices = None
        if not isinstance(self.dataset, IterableDataset):
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.dataset))[rank::world]
            indices = order[self.batches * self.batch_size:].tolist()
        # A private generator: DataLoader otherwise draws its workers' base seed from the global RNG, which would
        # make the training noise depend on when an epoch starts.
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        iterator = iter(DataLoader(self.dataset, batch_size=self.batch_size, sampler=indices,
                                   collate_fn=self.collate_fn, num_workers=self.num_workers, generator=generator))
        if indices is None:  # tar shards cannot seek: read up to the position
            for _ in range(self.batches):
                next(iterator, None)
        return iterator

    def next(self) -> dict:
        """The next batch with at least one usable sample (all-skipped batches count as taken)."""
        epoch_ends = 0
        while True:
            batch = next(self._iterator, StopIteration)
            if batch is StopIteration:
                epoch_ends += 1
                if epoch_ends > 1:  # a whole epoch went by without a usable sample
                    raise TrainingError(f"An epoch of {type(self.dataset).__name__} gave no usable sample: "
                                        f"{self.stats.summary()}")
                self.epoch, self.batches = self.epoch + 1, 0
                self._iterator = self._start()
                continue
            self.batches += 1
            if batch is not None:
                self.stats.merge(batch.pop("skipped", SkipStats()))
                return batch
