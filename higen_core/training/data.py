# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""Data for HiGen's image-video joint training: manifests, video clips, images, tar shards and skip accounting.

    stats = SkipStats()
    videos = VideoClipDataset("data/videos.csv", num_frames=16, fps=8, height=256, width=256, stats=stats)
    loader = DataLoader(videos, batch_size=8, shuffle=True, num_workers=8, collate_fn=collate_skipping)
    for epoch in range(epochs):
        videos.set_epoch(epoch)
        for batch in loader:
            if batch is None:                     # every sample of the batch was skipped
                continue
            stats.merge(batch.pop("skipped"))     # skips recorded in the worker that built the batch
            batch["pixel_values"]                 # (B, F, 3, H, W) in [-1, 1]; images come as F = 1

Every file is opened inside `__getitem__` / `__iter__`, so the datasets work in DataLoader worker processes. A file
that cannot be used is never fatal: its item is None (dropped by `collate_skipping`) and the skip is counted by reason
in a `SkipStats`. So is a caption a tokenizer cannot take (see `caption_problem`): the datasets check each caption as
they read it, so that nothing downstream meets one. `check_data` decodes every file once before training, so bad
files show up before GPU time is spent.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import logging
import math
import os
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from functools import partial
from typing import BinaryIO, Callable, Iterator, Literal

import av
import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = ("mp4", "webm", "mkv", "mov", "avi")
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp")
MAX_EXAMPLES = 5
# Frame timestamps are exact rationals (pts * time_base); in float, an exact hit on a target timestamp must not
# round onto the previous frame.
_TIME_TOLERANCE = 1e-6
# The last target timestamp must fall strictly inside the video (before its end, where no frame is shown any more);
# a millisecond is below any real frame interval and above the rounding of container durations.
_END_MARGIN = 1e-3
# Control characters (Unicode category Cc) other than tab and line breaks, which are whitespace to a tokenizer.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass
class SkipStats:
    """Skipped samples, counted by reason, with up to `MAX_EXAMPLES` example paths per reason.

    Counts are skip events: a bad file read in two epochs counts twice. Each process (the main one, each DataLoader
    worker) records into its own object; `merge` adds another one's counts.
    """

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def record(self, path: str, reason: str) -> None:
        """Count one skip of `path` for `reason`."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < MAX_EXAMPLES and path not in examples:
            examples.append(path)

    def merge(self, other: SkipStats) -> None:
        """Add `other`'s counts and examples to these."""
        for reason, count in other.counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + count
            examples = self.examples.setdefault(reason, [])
            for path in other.examples.get(reason, []):
                if len(examples) < MAX_EXAMPLES and path not in examples:
                    examples.append(path)

    def total(self) -> int:
        """The number of skips, all reasons together."""
        return sum(self.counts.values())

    def summary(self) -> str:
        """One line per reason, most frequent first: `reason: count (e.g. path, path)`."""
        if not self.counts:
            return "no samples skipped"
        lines = [f"{self.total()} samples skipped:"]
        for reason, count in sorted(self.counts.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"  {reason}: {count} (e.g. {', '.join(self.examples.get(reason, []))})")
        return "\n".join(lines)


# The skips recorded in this process while it is a DataLoader worker. A worker's dataset (and the SkipStats it holds)
# is a copy the main process never reads back, so skips wait here and travel to the main process with the next batch
# (`collate_skipping`). The main process never records here, so a worker, forked or spawned, starts with it empty.
_WORKER_SKIPS = SkipStats()


def _record_skip(stats: SkipStats, path: str, reason: str, detail: str = "") -> None:
    (stats if get_worker_info() is None else _WORKER_SKIPS).record(path, reason)
    logger.debug("skipped %s: %s%s", path, reason, f" ({detail})" if detail else "")


def _take_worker_skips() -> SkipStats:
    """The skips recorded in this worker since the last call (empty in the main process, which records directly)."""
    taken = SkipStats()
    if get_worker_info() is not None:
        taken.merge(_WORKER_SKIPS)
        _WORKER_SKIPS.counts.clear()
        _WORKER_SKIPS.examples.clear()
    return taken


# ----------------------------------------------------------------------------------------------------------------
# Manifests


class ManifestError(ValueError):
    """A manifest that cannot be read; the message names the file, the line and what is wrong."""


def load_manifests(manifests: str | list[str]) -> list[dict]:
    """Read captioned file lists.

    Each manifest is a `.csv` file (a header with columns `path` and `caption`; other columns are ignored), a `.jsonl`
    file (one `{"path": ..., "caption": ...}` object per line) or a folder (every `*.csv` and `*.jsonl` directly in
    it, in name order). Relative paths are resolved against the manifest file's folder.

    Returns `[{"path": absolute path, "caption": caption, "source": "MANIFEST, line N"}, ...]` in manifest order.
    Raises `ManifestError` for a malformed manifest and `FileNotFoundError` for a missing one. The listed files are
    not opened here and the captions are not checked: a missing file or a caption that cannot be used (a JSONL
    caption may be any JSON value) is skipped, and counted, when the datasets load the entry.
    """
    entries = []
    for manifest in [manifests] if isinstance(manifests, (str, os.PathLike)) else manifests:
        for path in _manifest_files(os.fspath(manifest)):
            read = _read_csv if path.lower().endswith(".csv") else _read_jsonl
            folder = os.path.dirname(os.path.abspath(path))
            for file_path, caption, line in read(path):
                resolved = os.path.normpath(os.path.join(folder, os.path.expanduser(file_path)))
                entries.append({"path": resolved, "caption": caption, "source": f"{path}, line {line}"})
    return entries


def _manifest_files(manifest: str) -> list[str]:
    if os.path.isdir(manifest):
        files = sorted(glob.glob(os.path.join(manifest, "*.csv")) + glob.glob(os.path.join(manifest, "*.jsonl")))
        if not files:
            raise ManifestError(f"{manifest}: the folder holds no *.csv or *.jsonl manifest.")
        return files
    if not os.path.exists(manifest):
        raise FileNotFoundError(f"Manifest not found: {manifest}")
    if not manifest.lower().endswith((".csv", ".jsonl")):
        raise ManifestError(f"{manifest}: a manifest must be a .csv file, a .jsonl file or a folder of them.")
    return [manifest]


def _read_csv(path: str) -> Iterator[tuple[str, str, int]]:
    with open(path, "rb") as file:
        data = file.read()
    try:
        # utf-8-sig: spreadsheet programs start their CSV exports with a byte-order mark.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ManifestError(f"{path}, line {line}: not UTF-8 text ({error.reason}).") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader, [])]
        if "path" not in header or "caption" not in header:
            raise ManifestError(
                f"{path}, line 1: the header must name the columns path and caption; it has {header or 'nothing'}."
            )
        path_column, caption_column = header.index("path"), header.index("caption")
        for row in reader:
            if not row:  # a blank line
                continue
            where = f"{path}, line {reader.line_num}"
            if len(row) != len(header):
                raise ManifestError(f"{where}: expected {len(header)} fields like the header, found {len(row)}.")
            if not row[path_column].strip():
                raise ManifestError(f"{where}: the path is empty.")
            yield row[path_column].strip(), row[caption_column], reader.line_num
    except csv.Error as error:
        raise ManifestError(f"{path}, line {reader.line_num}: malformed CSV ({error}).") from None


def _read_jsonl(path: str) -> Iterator[tuple[str, object, int]]:
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            where = f"{path}, line {number}"
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise ManifestError(f"{where}: not UTF-8 text ({error.reason}).") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ManifestError(f"{where}: invalid JSON ({error.msg} at column {error.colno}).") from None
            if not isinstance(record, dict):
                raise ManifestError(f"{where}: expected a JSON object with \"path\" and \"caption\".")
            file_path = record.get("path")
            if not isinstance(file_path, str) or not file_path.strip():
                raise ManifestError(f"{where}: \"path\" is missing, empty or not a string.")
            if "caption" not in record:
                raise ManifestError(f"{where}: \"caption\" is missing.")
            yield file_path.strip(), record["caption"], number


def caption_problem(caption: object) -> str | None:
    """Why a caption cannot be given to a tokenizer, or None if it can: not a string, not encodable as UTF-8 (a lone
    surrogate, which JSON's \\ud800 escapes can produce), or holding control characters other than tab and line
    breaks."""
    if not isinstance(caption, str):
        return f"not a string but {type(caption).__name__}"
    try:
        caption.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"not encodable as UTF-8 ({error.reason} at character {error.start})"
    if control := _CONTROL.search(caption):
        return f"control character U+{ord(control.group()):04X} at character {control.start()}"
    return None


def _caption_or_skip(stats: SkipStats, entry: dict) -> str | None:
    """The entry's caption, or None with the skip recorded under "bad caption", named by its manifest line."""
    problem = caption_problem(entry["caption"])
    if problem is not None:
        _record_skip(stats, entry["source"], "bad caption", problem)
        return None
    return entry["caption"]


# ----------------------------------------------------------------------------------------------------------------
# Decoding


class _Skip(Exception):
    """Raised by the decoders for a sample that cannot be used; `reason` is the SkipStats key."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


def _resize_crop(rgb: np.ndarray, height: int, width: int) -> torch.Tensor:
    """(h, w, 3) uint8 -> (3, height, width) uint8: scaled so that it covers height x width with its aspect ratio
    kept, then centre-cropped."""
    # Kept in uint8 and channels-last (the permuted view of an HWC array is): torch's fast path for resizing, many
    # times quicker than float, and the values stay exactly in 0..255.
    pixels = torch.from_numpy(rgb).permute(2, 0, 1)
    h, w = pixels.shape[1:]
    scale = max(height / h, width / w)
    scaled_h, scaled_w = max(height, round(h * scale)), max(width, round(w * scale))
    if (scaled_h, scaled_w) != (h, w):
        # Bilinear with antialiasing: no aliasing when shrinking, and no ringing (bicubic's) at sharp edges.
        pixels = F.interpolate(pixels[None], size=(scaled_h, scaled_w), mode="bilinear", antialias=True)[0]
    top, left = (scaled_h - height) // 2, (scaled_w - width) // 2
    return pixels[:, top : top + height, left : left + width]


def _to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 -1..1, in one pass over the stacked frames (the crops are strided views, slow to
    convert one by one)."""
    return pixels.contiguous().float() / 127.5 - 1.0


def _decode_image(source: str | BinaryIO, height: int, width: int) -> torch.Tensor:
    """An image file -> (1, 3, height, width) in [-1, 1]."""
    try:
        with PIL.Image.open(source) as image:
            # Phone photos store their orientation in EXIF instead of rotating the pixels.
            rgb = np.array(PIL.ImageOps.exif_transpose(image).convert("RGB"))
    except FileNotFoundError:
        raise _Skip("missing") from None
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError) as error:
        # PIL reports unknown formats, broken and truncated data with these.
        raise _Skip("unreadable", str(error)) from None
    return _to_model_range(_resize_crop(rgb, height, width)[None])


def _time_range(container: av.container.InputContainer, stream: av.VideoStream) -> tuple[float, float]:
    """(first, end) in seconds: the video is shown from `first` until just before `end`."""
    time_base = stream.time_base
    if stream.duration is not None:
        start = stream.start_time or 0
        return float(start * time_base), float((start + stream.duration) * time_base)
    if container.duration is not None:
        first = container.start_time / av.time_base if container.start_time is not None else 0.0
        return first, first + container.duration / av.time_base
    # Streams written live (WebM from browsers, for one) carry no duration: read the packets' timestamps, which
    # needs no decoding.
    first, end = math.inf, -math.inf
    for packet in container.demux(stream):
        if packet.pts is not None:
            first = min(first, float(packet.pts * time_base))
            end = max(end, float((packet.pts + (packet.duration or 0)) * time_base))
    if first == math.inf:
        raise _Skip("no timestamps")
    return first, end


def _frames_at(container: av.container.InputContainer, stream: av.VideoStream, targets: list[float]) -> list:
    """For each target time (seconds, increasing) the latest frame shown at or before it; frames are told apart by
    their own timestamps, so variable frame rates need nothing special."""
    # Land on the keyframe at or before the first target, then decode forward.
    container.seek(math.floor(targets[0] / stream.time_base), stream=stream, backward=True)
    picked, previous, longest_gap = [], None, 0.0
    for frame in container.decode(stream):
        if frame.time is None:
            raise _Skip("no timestamps")
        while len(picked) < len(targets) and frame.time > targets[len(picked)] + _TIME_TOLERANCE:
            # This frame comes after the target, so the previous one is on screen then. With no previous frame the
            # target precedes the first decoded frame, which happens when a container's start time is a little
            # earlier than its first frame: take that frame.
            picked.append(previous if previous is not None else frame)
        if len(picked) == len(targets):
            return picked
        if previous is not None:
            longest_gap = max(longest_gap, frame.time - previous.time)
        previous = frame
    # End of the stream: the last frame stays on screen for about one frame interval. A target further on means the
    # data stopped before the duration the container announced.
    if previous is None:
        raise _Skip("truncated", "no frame decoded")
    if longest_gap == 0.0 and stream.average_rate:
        longest_gap = float(1 / stream.average_rate)
    if targets[-1] > previous.time + longest_gap:
        raise _Skip("truncated", f"frames end at {previous.time:.3f} s, the clip needs {targets[-1]:.3f} s")
    return picked + [previous] * (len(targets) - len(picked))


def _decode_clip(
    source: str | BinaryIO, num_frames: int, fps: float, height: int, width: int, position: float
) -> torch.Tensor:
    """num_frames frames sampled at `fps` -> (num_frames, 3, height, width) in [-1, 1].

    The clip spans (num_frames - 1) / fps seconds; `position` in [0, 1] places its start between the video's start
    (0) and the latest start that keeps the whole clip inside the video (1).
    """
    try:
        container = av.open(source)
    except FileNotFoundError:  # av's error for a missing file is also the builtin one
        raise _Skip("missing") from None
    except av.FFmpegError as error:
        raise _Skip("unreadable", str(error)) from None
    with container:
        if not container.streams.video:
            raise _Skip("no video stream")
        stream = container.streams.video[0]
        span = (num_frames - 1) / fps
        try:
            first, end = _time_range(container, stream)
            latest_start = end - span - _END_MARGIN
            if latest_start < first:
                raise _Skip("too short", f"{end - first:.3f} s, the clip spans {span:.3f} s")
            start = first + position * (latest_start - first)
            frames = _frames_at(container, stream, [start + k / fps for k in range(num_frames)])
        except av.FFmpegError as error:
            # The header was readable but the data was not: in practice a file cut short (an interrupted download
            # or copy) that still has its index at the front.
            raise _Skip("truncated", str(error)) from None
        # A frame repeated in the clip (target fps above the video's) is converted once.
        converted = {}
        for frame in frames:
            if id(frame) not in converted:
                converted[id(frame)] = _resize_crop(frame.to_ndarray(format="rgb24"), height, width)
        return _to_model_range(torch.stack([converted[id(frame)] for frame in frames]))


def _load_or_skip(stats: SkipStats, path: str, load: Callable[[], torch.Tensor]) -> torch.Tensor | None:
    try:
        return load()
    except _Skip as skip:
        _record_skip(stats, path, skip.reason, skip.detail)
    except Exception as error:
        # A training run must outlive one odd file. The reason names the error so the summary shows it, and the
        # traceback is logged: a reason like this one for many files points at a bug, not at the data.
        _record_skip(stats, path, f"error: {type(error).__name__}", str(error))
        logger.warning("Unexpected error loading %s; the sample is skipped.", path, exc_info=True)
    return None


def _check_size(height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive; got {height} x {width}.")


def _check_clip(num_frames: int, fps: float) -> None:
    if num_frames < 1 or not fps > 0:
        raise ValueError(f"num_frames must be at least 1 and fps positive; got {num_frames} frames at {fps} fps.")


def _rng(*values: int) -> np.random.Generator:
    # numpy hashes the whole tuple (SeedSequence), so neighbouring indices and epochs give unrelated streams.
    return np.random.default_rng([int(value) for value in values])


# ----------------------------------------------------------------------------------------------------------------
# Datasets


class VideoClipDataset(Dataset):
    """Captioned videos from manifests (see `load_manifests`); each item is one clip sampled by timestamp.

    Item i is `{"pixel_values": (num_frames, 3, height, width) float32 in [-1, 1], "caption": str, "path": str}`, or
    None when the sample is skipped; the skip is recorded in `stats` under one of the reasons "missing",
    "unreadable", "no video stream", "no timestamps", "too short", "truncated", or "bad caption" (see
    `caption_problem`; its example is the manifest's file and line).

    The clip's frames are at `fps`, spanning (num_frames - 1) / fps seconds; its start is uniform among the starts
    that keep the clip inside the video, drawn from a generator seeded with (`seed`, epoch, i), so a run is
    reproducible whatever the number of workers. Each target timestamp takes the latest frame at or before it.
    """

    def __init__(
        self,
        manifests: str | list[str],
        num_frames: int,
        fps: float,
        height: int,
        width: int,
        stats: SkipStats | None = None,
        seed: int = 0,
    ):
        _check_clip(num_frames, fps)
        _check_size(height, width)
        self.entries = load_manifests(manifests)
        if not self.entries:
            raise ManifestError(f"The manifests {manifests} list no videos.")
        self.num_frames, self.fps, self.height, self.width = num_frames, fps, height, width
        self.stats = stats if stats is not None else SkipStats()
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Draw other clip starts this epoch. DataLoader workers copy the dataset when an epoch's iteration starts,
        so call this before iterating (with `persistent_workers=True` the workers keep the epoch they started with)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict | None:
        i = range(len(self.entries))[i]  # negative indices and bounds, like a list
        return self._load(i, position=_rng(self.seed, self.epoch, i).random())

    def _load(self, i: int, position: float) -> dict | None:
        entry = self.entries[i]
        caption = _caption_or_skip(self.stats, entry)
        if caption is None:
            return None
        load = partial(_decode_clip, entry["path"], self.num_frames, self.fps, self.height, self.width, position)
        pixels = _load_or_skip(self.stats, entry["path"], load)
        return None if pixels is None else {"pixel_values": pixels, "caption": caption, "path": entry["path"]}


class ImageTextDataset(Dataset):
    """Captioned images from manifests (see `load_manifests`), for the image half of joint training.

    Item i is `{"pixel_values": (1, 3, height, width) float32 in [-1, 1], "caption": str, "path": str}` (an image is a
    one-frame video), or None when the sample is skipped ("missing", "unreadable", "bad caption"), recorded in
    `stats`.
    """

    def __init__(self, manifests: str | list[str], height: int, width: int, stats: SkipStats | None = None):
        _check_size(height, width)
        self.entries = load_manifests(manifests)
        if not self.entries:
            raise ManifestError(f"The manifests {manifests} list no images.")
        self.height, self.width = height, width
        self.stats = stats if stats is not None else SkipStats()

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict | None:
        entry = self.entries[i]
        caption = _caption_or_skip(self.stats, entry)
        if caption is None:
            return None
        load = partial(_decode_image, entry["path"], self.height, self.width)
        pixels = _load_or_skip(self.stats, entry["path"], load)
        return None if pixels is None else {"pixel_values": pixels, "caption": caption, "path": entry["path"]}


def _rank_and_world_size() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _tar_samples(shard: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for each group of consecutive members sharing a key, WebDataset's convention: the
    key is the member's path up to the first dot of its file name ("clips/0001.mp4" -> "clips/0001", "mp4")."""
    # Stream mode ("r|*") reads the shard once, front to back, and also reads compressed shards.
    with tarfile.open(shard, mode="r|*") as tar:
        key, members = None, {}
        for member in tar:
            if not member.isfile():
                continue
            folder, name = os.path.split(member.name)
            stem, dot, extension = name.partition(".")
            if not dot:
                continue  # not part of a sample
            member_key = f"{folder}/{stem}" if folder else stem
            if member_key != key:
                if key is not None:
                    yield key, members
                key, members = member_key, {}
            members[extension.lower()] = tar.extractfile(member).read()
        if key is not None:
            yield key, members


class TarShardDataset(IterableDataset):
    """Captioned videos or images in WebDataset-style tar shards: `KEY.mp4` (or webm, mkv, mov, avi) for videos,
    `KEY.png` (or jpg, jpeg, webp) for images, and `KEY.txt` for the caption, consecutive in the tar.

    Yields the same dicts as `VideoClipDataset` / `ImageTextDataset` ("path" is "SHARD#KEY"). Shards are shuffled
    with (`seed`, epoch), the same on every rank, then dealt out across distributed ranks (torch.distributed, when
    initialised, or `rank` of `world_size` readers) and DataLoader workers. With fewer shards than ranks x workers,
    everyone reads every shard and keeps every n-th sample instead. Ranks may get different numbers of samples: train
    a fixed number of steps.

    Bad samples are skipped and recorded in `stats`: the video or image reasons, "no video" / "no image", "no
    caption", "unreadable caption" (not UTF-8), "bad caption" (see `caption_problem`), and per shard "missing" or
    "unreadable shard" (a damaged or truncated tar; the samples read before the damage are kept).
    """

    def __init__(
        self,
        shards: list[str] | str,
        kind: Literal["video", "image"],
        num_frames: int | None,
        fps: float | None,
        height: int,
        width: int,
        stats: SkipStats | None = None,
        seed: int = 0,
        shuffle_shards: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        if kind not in ("video", "image"):
            raise ValueError(f'kind must be "video" or "image"; got {kind!r}.')
        if kind == "video":
            _check_clip(num_frames or 0, fps or 0.0)
        _check_size(height, width)
        if isinstance(shards, (str, os.PathLike)):
            pattern = os.fspath(shards)
            shards = sorted(glob.glob(os.path.expanduser(pattern)))  # sorted: every rank must see the same list
            if not shards:
                raise FileNotFoundError(f"No tar shard matches {pattern}")
        self.shards = [os.fspath(shard) for shard in shards]
        if not self.shards:
            raise ValueError("TarShardDataset needs at least one shard.")
        self.kind, self.num_frames, self.fps, self.height, self.width = kind, num_frames, fps, height, width
        self.stats = stats if stats is not None else SkipStats()
        self.seed, self.epoch, self.shuffle_shards = seed, 0, shuffle_shards
        # Joint training gives images and videos to different processes: each kind's shards are then split among the
        # processes of that kind only, not among all of them.
        if (rank is None) != (world_size is None) or (world_size is not None and not 0 <= rank < world_size):
            raise ValueError(f"Give both rank and world_size (0 <= rank < world_size), or neither; got {rank}, "
                             f"{world_size}.")
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int) -> None:
        """Shuffle shards and draw clip starts anew this epoch (see `VideoClipDataset.set_epoch`)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict]:
        shards = self.shards
        if self.shuffle_shards:
            shards = [shards[j] for j in _rng(self.seed, self.epoch).permutation(len(shards))]
        rank, world_size = (self.rank, self.world_size) if self.rank is not None else _rank_and_world_size()
        worker = get_worker_info()
        num_workers, worker_id = (worker.num_workers, worker.id) if worker is not None else (1, 0)
        readers, reader = world_size * num_workers, rank * num_workers + worker_id
        by_shard = len(shards) >= readers
        sample_number = -1
        for shard in shards[reader::readers] if by_shard else shards:
            # When every reader reads every shard, one of them reports the shard's problems.
            report_shard = by_shard or reader == 0
            if not os.path.exists(shard):
                if report_shard:
                    _record_skip(self.stats, shard, "missing")
                continue
            try:
                for key, members in _tar_samples(shard):
                    sample_number += 1
                    if not by_shard and sample_number % readers != reader:
                        continue
                    sample = self._decode(shard, key, members)
                    if sample is not None:
                        yield sample
            except (tarfile.TarError, OSError, EOFError) as error:
                if report_shard:
                    _record_skip(self.stats, shard, "unreadable shard", str(error))

    def _decode(self, shard: str, key: str, members: dict[str, bytes]) -> dict | None:
        path = f"{shard}#{key}"
        extensions = VIDEO_EXTENSIONS if self.kind == "video" else IMAGE_EXTENSIONS
        # WebDataset extensions may be compound ("clip.mp4"); the last part names the format.
        media = next((content for ext, content in members.items() if ext.rsplit(".", 1)[-1] in extensions), None)
        if media is None:
            _record_skip(self.stats, path, f"no {self.kind}", f"members: {sorted(members)}")
            return None
        if "txt" not in members:
            _record_skip(self.stats, path, "no caption")
            return None
        try:
            caption = members["txt"].decode("utf-8").strip()
        except UnicodeDecodeError as error:
            _record_skip(self.stats, path, "unreadable caption", str(error))
            return None
        problem = caption_problem(caption)
        if problem is not None:
            _record_skip(self.stats, path, "bad caption", problem)
            return None
        if self.kind == "video":
            # The key, not the sample's position, seeds the clip start: positions depend on the shard split.
            rng = _rng(self.seed, self.epoch, zlib.crc32(f"{os.path.basename(shard)}#{key}".encode()))
            load = partial(
                _decode_clip, io.BytesIO(media), self.num_frames, self.fps, self.height, self.width, rng.random()
            )
        else:
            load = partial(_decode_image, io.BytesIO(media), self.height, self.width)
        pixels = _load_or_skip(self.stats, path, load)
        return None if pixels is None else {"pixel_values": pixels, "caption": caption, "path": path}


# ----------------------------------------------------------------------------------------------------------------
# Batching and checking


def collate_skipping(batch: list[dict | None]) -> dict | None:
    """DataLoader `collate_fn`: drops the skipped (None) samples and stacks the rest.

    Returns `{"pixel_values": (B, F, 3, H, W), "captions": [str] * B, "paths": [str] * B, "skipped": SkipStats}`, or
    None when every sample was skipped. "skipped" holds the skips recorded in the DataLoader worker that built the
    batch since its previous batch: merge it into your stats (`stats.merge(batch.pop("skipped"))`), since a worker's
    records never reach the dataset's `stats` otherwise. In the main process (num_workers=0) the datasets record
    into `stats` directly and "skipped" is empty. A worker's skips after its last non-empty batch of an epoch are
    not reported; `check_data` reports every one.
    """
    samples = [sample for sample in batch if sample is not None]
    if not samples:
        return None  # the worker keeps its skip records for its next batch
    return {
        "pixel_values": torch.stack([sample["pixel_values"] for sample in samples]),
        "captions": [sample["caption"] for sample in samples],
        "paths": [sample["path"] for sample in samples],
        "skipped": _take_worker_skips(),
    }


class _LastClips(Dataset):
    """A VideoClipDataset's items with every clip at its latest start: a clip reaching the end of the video catches
    files cut short, which an early clip would miss."""

    def __init__(self, videos: VideoClipDataset):
        self.videos = videos

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict | None:
        return self.videos._load(i, position=1.0)


def _count_loaded(batch: list[dict | None]) -> tuple[int, SkipStats]:
    return sum(sample is not None for sample in batch), _take_worker_skips()


def _count_usable(dataset: Dataset, num_workers: int, skipped: SkipStats) -> int:
    usable = 0
    for loaded, worker_skips in DataLoader(dataset, batch_size=16, num_workers=num_workers, collate_fn=_count_loaded):
        usable += loaded
        skipped.merge(worker_skips)
    return usable


def check_data(
    video_manifests: str | list[str] | None,
    image_manifests: str | list[str] | None,
    num_frames: int,
    fps: float,
    height: int,
    width: int,
    num_workers: int = 0,
) -> dict:
    """Decode every file once, as training would, and report what would be skipped and why, before any GPU time is
    spent. Each video's clip is taken at its latest start, so a file cut short is found.

    Returns `{"videos": usable videos, "images": usable images, "skipped": SkipStats}`. Either manifest may be None
    (video-only or image-only training). `num_workers` > 0 decodes in that many processes.
    """
    skipped = SkipStats()
    report = {"videos": 0, "images": 0, "skipped": skipped}
    if video_manifests:
        videos = VideoClipDataset(video_manifests, num_frames, fps, height, width, stats=skipped)
        report["videos"] = _count_usable(_LastClips(videos), num_workers, skipped)
    if image_manifests:
        images = ImageTextDataset(image_manifests, height, width, stats=skipped)
        report["images"] = _count_usable(images, num_workers, skipped)
    logger.info("check_data: %d videos, %d images usable; %s", report["videos"], report["images"], skipped.summary())
    return report
