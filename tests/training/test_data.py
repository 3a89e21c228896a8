# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""The training data layer on small media files written here: clip sampling by timestamp, resizing, manifests, skip
accounting, DataLoader workers and tar shards."""

from __future__ import annotations

import fractions
import io
import json
import tarfile
import wave

import av
import numpy as np
import PIL.Image
import pytest
import torch
from torch.utils.data import DataLoader

from higen_core.training import data
from higen_core.training.data import (
    ImageTextDataset,
    ManifestError,
    SkipStats,
    TarShardDataset,
    VideoClipDataset,
    check_data,
    collate_skipping,
    load_manifests,
)

HEIGHT, WIDTH = 32, 48
# Variable frame rate: frame timestamps in milliseconds (holds of 50 to 380 ms between frames).
VFR_TIMES_MS = [0, 100, 150, 400, 500, 520, 900, 1000, 1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800]


def write_video(path, num_frames=16, fps=8, times_ms=None, options=None, format=None):
    """Frame i is a flat grey of level 10 + 15 i (mod 16 frames), so the decoded level tells which frame it was."""
    with av.open(str(path), "w", format=format, options=options or {}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if times_ms is not None:
            stream.codec_context.time_base = stream.time_base = fractions.Fraction(1, 1000)
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.full((HEIGHT, WIDTH, 3), 10 + 15 * (i % 16), np.uint8), "rgb24")
            if times_ms is not None:
                frame.pts, frame.time_base = times_ms[i], fractions.Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return str(path)


def frame_indices(pixel_values: torch.Tensor) -> list[int]:
    levels = ((pixel_values + 1) * 127.5).mean(dim=(1, 2, 3))
    return [round((level.item() - 10) / 15) for level in levels]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    files = {
        "good": write_video(root / "good.mp4"),
        "vfr": write_video(root / "vfr.mp4", times_ms=VFR_TIMES_MS),
        "short": write_video(root / "short.mp4", num_frames=4),
        "no_duration": write_video(root / "no_duration.mkv", options={"live": "1"}),
    }
    # Cut short: with the index (moov) at the end nothing can be read; at the front (faststart), the header reads
    # and the data stops early. "cut_late" keeps its first 4 s of 8.
    for name, num_frames, kept, options in [
        ("cut", 16, 0.5, None),
        ("cut_faststart", 16, 0.5, {"movflags": "faststart"}),
        ("cut_late", 64, 0.75, {"movflags": "faststart"}),
    ]:
        whole = write_video(root / f"whole_{name}.mp4", num_frames, options=options)
        with open(whole, "rb") as file:
            content = file.read()
        (root / f"{name}.mp4").write_bytes(content[: int(len(content) * kept)])
        files[name] = str(root / f"{name}.mp4")
    (root / "text.mp4").write_text("not a video")
    files["text"] = str(root / "text.mp4")
    with wave.open(str(root / "audio.mp4"), "wb") as audio:  # a WAV named .mp4: a container with no video stream
        audio.setnchannels(1), audio.setsampwidth(2), audio.setframerate(8000)
        audio.writeframes(b"\0\0" * 8000)
    files["audio"] = str(root / "audio.mp4")
    files["missing"] = str(root / "missing.mp4")
    # Left quarter red, middle half green, right quarter blue: a centre square crop keeps only green.
    stripes = np.zeros((32, 64, 3), np.uint8)
    stripes[:, :16, 0], stripes[:, 16:48, 1], stripes[:, 48:, 2] = 255, 255, 255
    PIL.Image.fromarray(stripes).save(root / "stripes.png")
    files["png"] = str(root / "stripes.png")
    png_bytes = (root / "stripes.png").read_bytes()
    (root / "corrupt.png").write_bytes(png_bytes[:40] + b"\0" * 40)
    files["corrupt_png"] = str(root / "corrupt.png")
    return files


def write_manifest(path, paths, captions=None):
    with open(path, "w") as file:
        for i, media_path in enumerate(paths):
            file.write(json.dumps({"path": media_path, "caption": (captions or {}).get(i, f"caption {i}")}) + "\n")
    return str(path)


def test_skip_stats_record_merge_summary():
    stats, other = SkipStats(), SkipStats()
    for i in range(7):
        stats.record(f"/v/{i}.mp4", "missing")
    other.record("/v/x.mp4", "too short")
    other.record("/v/0.mp4", "missing")
    stats.merge(other)
    assert stats.counts == {"missing": 8, "too short": 1} and stats.total() == 9
    assert stats.examples["missing"] == [f"/v/{i}.mp4" for i in range(5)]
    lines = stats.summary().splitlines()
    assert lines[0] == "9 samples skipped:"
    assert lines[1].startswith("  missing: 8 (e.g. /v/0.mp4") and lines[2] == "  too short: 1 (e.g. /v/x.mp4)"
    assert SkipStats().summary() == "no samples skipped"
    # Most frequent first, then by name.
    ordered = SkipStats()
    for reason in ["missing", "unreadable", "bad caption", "unreadable", "unreadable"]:
        ordered.record("/v/y.mp4", reason)
    reasons = [line.split(":")[0].strip() for line in ordered.summary().splitlines()[1:]]
    assert reasons == ["unreadable", "bad caption", "missing"]


def test_manifests_csv_jsonl_folder_relative_paths(tmp_path):
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "a.csv").write_text('id,path,caption,score\n1,clips/a.mp4,"a cat, sleeping",0.9\n\n2,/abs/b.mp4,,0.1\n')
    # A byte-order mark, as some editors write one, starts the JSONL.
    (folder / "b.jsonl").write_bytes(b'\xef\xbb\xbf{"path": "../c.png", "caption": "a dog", "extra": 1}\n\n')
    (folder / "notes.txt").write_text("ignored")
    csv, jsonl = folder / "a.csv", folder / "b.jsonl"
    expected = [
        {"path": str(folder / "clips" / "a.mp4"), "caption": "a cat, sleeping", "source": f"{csv}, line 2"},
        {"path": "/abs/b.mp4", "caption": "", "source": f"{csv}, line 4"},
        {"path": str(tmp_path / "c.png"), "caption": "a dog", "source": f"{jsonl}, line 1"},
    ]
    assert load_manifests(str(folder)) == expected
    assert load_manifests([str(folder / "b.jsonl"), str(folder / "a.csv")]) == expected[2:] + expected[:2]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("m.csv", "path,text\na.mp4,x\n", "m.csv, line 1: the header must name the columns path and caption"),
        ("m.csv", "path,caption\na.mp4,x\nb.mp4,y,z\n", "m.csv, line 3: expected 2 fields"),
        ("m.csv", "path,caption\n,x\n", "m.csv, line 2: the path is empty"),
        ("m.csv", "", "m.csv, line 1: the header must name the columns path and caption; it has nothing"),
        ("m.csv", "path,caption\na.mp4," + "x" * 200_000 + "\n", "m.csv, line 2: malformed CSV \\(field larger than"),
        ("m.jsonl", '{"path": "a.mp4", "caption": "x"}\n{"path": "b.mp4", \n', "m.jsonl, line 2: invalid JSON"),
        ("m.jsonl", '["a.mp4", "x"]\n', "m.jsonl, line 1: expected a JSON object"),
        ("m.jsonl", '{"caption": "x"}\n', 'm.jsonl, line 1: "path" is missing'),
        ("m.jsonl", '{"path": "a.mp4"}\n', 'm.jsonl, line 1: "caption" is missing'),
        ("m.txt", "a.mp4\n", "must be a .csv file, a .jsonl file or a folder"),
    ],
)
def test_malformed_manifest_names_file_line_and_problem(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(ManifestError, match=message):
        load_manifests(str(tmp_path / name))


def test_missing_and_empty_manifests(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_manifests(str(tmp_path / "nope.csv"))
    with pytest.raises(ManifestError, match="no \\*.csv or \\*.jsonl"):
        load_manifests(str(tmp_path))
    (tmp_path / "m.csv").write_bytes(b"path,caption\na.mp4,ok\nb.mp4,caf\xe9\n")
    with pytest.raises(ManifestError, match="m.csv, line 3: not UTF-8"):
        load_manifests(str(tmp_path / "m.csv"))


# Written to the JSONL as json.dumps writes them: a lone surrogate becomes the escape \ud800, which json.loads reads
# back as a str that no tokenizer (nor UTF-8) takes.
BAD_CAPTIONS = ["lone \ud800 surrogate", "a bell\x07", "nul\x00", None, 42, ["a", "list"], "C1 \x85 control"]


def test_caption_problem_names_what_a_tokenizer_cannot_take():
    for caption in BAD_CAPTIONS:
        assert data.caption_problem(caption) is not None, caption
    for caption in ["", "a red circle", "café, 猫 and 🐈", "two\tcolumns\nand lines\r\n"]:
        assert data.caption_problem(caption) is None, caption


def test_bad_captions_are_skipped_and_named_by_manifest_line(tmp_path, media, caplog):
    manifest = tmp_path / "m.jsonl"
    captions = {i + 1: caption for i, caption in enumerate(BAD_CAPTIONS)}
    write_manifest(manifest, [media["good"]] * (len(BAD_CAPTIONS) + 1), captions)
    assert "\\ud800" in manifest.read_text()
    stats = SkipStats()
    videos = VideoClipDataset(str(manifest), 4, 4, 16, 16, stats)
    with caplog.at_level("DEBUG", logger=data.logger.name):
        items = [videos[i] for i in range(len(videos))]
    assert items[0]["caption"] == "caption 0" and items[1:] == [None] * len(BAD_CAPTIONS)
    assert f"skipped {manifest}, line 3: bad caption ({data.caption_problem(BAD_CAPTIONS[1])})\n" in caplog.text
    assert stats.counts == {"bad caption": len(BAD_CAPTIONS)}
    assert stats.examples["bad caption"] == [f"{manifest}, line {n}" for n in range(2, 7)]  # MAX_EXAMPLES of them
    # Images, CSV manifests (control characters only: a CSV is read as UTF-8 text) and every epoch alike.
    csv_manifest = tmp_path / "m.csv"
    csv_manifest.write_text(f'path,caption\n{media["png"]},fine\n{media["png"]},"ding\x07"\n')
    stats = SkipStats()
    images = ImageTextDataset(str(csv_manifest), 16, 16, stats)
    assert images[0]["caption"] == "fine" and images[1] is None and images[1] is None
    assert stats.counts == {"bad caption": 2} and stats.examples["bad caption"] == [f"{csv_manifest}, line 3"]


def test_check_data_names_bad_captions(tmp_path, media):
    manifest = write_manifest(tmp_path / "v.jsonl", [media["good"]] * 3, {1: "lone \ud800 surrogate", 2: 7})
    for num_workers in (0, 2):
        report = check_data(manifest, None, 8, 8, 16, 16, num_workers=num_workers)
        assert report["videos"] == 1 and report["skipped"].counts == {"bad caption": 2}
        assert f"bad caption: 2 (e.g. {manifest}, line 2, {manifest}, line 3)" in report["skipped"].summary()


def test_video_clip_shape_range_and_reproducibility(tmp_path, media):
    manifest = write_manifest(tmp_path / "m.jsonl", [media["good"]] * 8, {0: "a grey square"})
    videos = VideoClipDataset(manifest, num_frames=8, fps=4, height=16, width=16)
    item = videos[0]
    assert item["pixel_values"].shape == (8, 3, 16, 16) and item["pixel_values"].dtype == torch.float32
    assert item["pixel_values"].min() >= -1 and item["pixel_values"].max() <= 1
    assert item["caption"] == "a grey square" and item["path"] == media["good"]
    again = VideoClipDataset(manifest, num_frames=8, fps=4, height=16, width=16)
    assert torch.equal(again[0]["pixel_values"], item["pixel_values"])
    # The clip starts follow the seed (0 by default), the epoch and the index.
    starts = lambda dataset: [frame_indices(dataset[i]["pixel_values"])[0] for i in range(8)]
    first = starts(videos)
    assert len(set(first)) > 1 and starts(VideoClipDataset(manifest, 8, 4, 16, 16, seed=0)) == first
    assert starts(VideoClipDataset(manifest, 8, 4, 16, 16, seed=1)) != first
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ManifestError) as error:
        VideoClipDataset(str(empty), 8, 4, 16, 16)
    assert str(error.value) == f"The manifests {empty} list no videos."


def test_a_video_that_starts_late_is_read_from_its_first_frame(media, tmp_path):
    # Timestamps from 500 ms: the clip's positions count from the video's own start.
    late = write_video(tmp_path / "late.mp4", times_ms=[500 + t for t in VFR_TIMES_MS])
    assert frame_indices(data._decode_clip(late, 10, 10, HEIGHT, WIDTH, position=0.0)) == [0, 1, 2, 2, 3, 4, 5, 5, 5, 6]


def test_an_unexpected_error_is_skipped_under_its_name(tmp_path, media, monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("a bug, not the data")

    monkeypatch.setattr(data, "_decode_image", broken)
    images = ImageTextDataset(write_manifest(tmp_path / "m.jsonl", [media["png"]]), 16, 16)
    assert images[0] is None and images.stats.counts == {"error: RuntimeError": 1}
    assert "Unexpected error loading" in caplog.text


def test_timestamp_sampling_picks_every_other_frame_at_half_the_rate(tmp_path, media):
    videos = VideoClipDataset(write_manifest(tmp_path / "m.jsonl", [media["good"]]), 8, 4, HEIGHT, WIDTH)
    phases = set()
    for epoch in range(12):
        videos.set_epoch(epoch)
        indices = frame_indices(videos[0]["pixel_values"])
        # 8 frames at 4 fps span 1.75 s of a 2 s video: the start is in [0, 0.25) s, so frames 0, 2, .., 14 or
        # 1, 3, .., 15.
        assert indices == list(range(indices[0], indices[0] + 16, 2)), indices
        phases.add(indices[0])
    assert phases == {0, 1}
    # Above the video's rate, frames repeat: each target takes the latest frame at or before it.
    clip = data._decode_clip(media["good"], 4, 16, HEIGHT, WIDTH, position=0.0)
    assert frame_indices(clip) == [0, 0, 1, 1]


def test_variable_frame_rate_uses_each_frames_timestamp(media):
    def expected(start):  # the latest frame at or before each target, from the timestamps the file was written with
        return [max(i for i, t in enumerate(VFR_TIMES_MS) if t <= round((start + k / 10) * 1000, 6)) for k in range(10)]

    first = data._decode_clip(media["vfr"], 10, 10, HEIGHT, WIDTH, position=0.0)
    assert frame_indices(first) == expected(0.0) == [0, 1, 2, 2, 3, 4, 5, 5, 5, 6]
    # The file lasts 1.875 s (its last frame is shown from 1.8 s), so the latest start is 1.875 - 0.9 - 0.001 s.
    last = data._decode_clip(media["vfr"], 10, 10, HEIGHT, WIDTH, position=1.0)
    assert frame_indices(last) == expected(0.974) == [6, 7, 8, 9, 10, 11, 12, 13, 14, 15]


def test_video_without_duration_reads_packet_timestamps(media):
    clip = data._decode_clip(media["no_duration"], 16, 8, HEIGHT, WIDTH, position=1.0)
    assert frame_indices(clip) == list(range(16))
    with pytest.raises(data._Skip, match="too short"):
        data._decode_clip(media["no_duration"], 17, 8, HEIGHT, WIDTH, position=0.0)


def test_bad_videos_are_skipped_and_counted_by_reason(tmp_path, media):
    names = ["good", "missing", "text", "cut", "cut_faststart", "short", "audio", "no_duration"]
    stats = SkipStats()
    videos = VideoClipDataset(write_manifest(tmp_path / "m.jsonl", [media[n] for n in names]), 16, 8, 16, 24, stats)
    items = [videos[i] for i in range(len(videos))]
    assert [item is not None for item in items] == [True] + [False] * 6 + [True]
    assert stats.counts == {"missing": 1, "unreadable": 2, "truncated": 1, "too short": 1, "no video stream": 1}
    assert stats.examples["unreadable"] == [media["text"], media["cut"]]
    assert stats.examples["truncated"] == [media["cut_faststart"]]


def test_images_resized_centre_cropped_and_bad_ones_skipped(tmp_path, media):
    stats = SkipStats()
    manifest = write_manifest(tmp_path / "m.jsonl", [media["png"], media["corrupt_png"], media["missing"]])
    images = ImageTextDataset(manifest, height=16, width=16, stats=stats)
    pixels = images[0]["pixel_values"]
    assert pixels.shape == (1, 3, 16, 16) and pixels.min() >= -1 and pixels.max() <= 1
    # 32x64 -> 16x32 (aspect kept) -> the middle 16 columns: only the green half survives (the antialiasing filter
    # blends a little red and blue into the outermost columns). Squashed to 16x16, a quarter would be red or blue.
    green, red_blue = pixels[0, 1], pixels[0, [0, 2]]
    assert torch.equal(green[:, 1:-1], torch.ones(16, 14)) and green.min() > 0.4
    assert red_blue[:, :, 1:-1].max() == -1 and red_blue.max() < -0.7
    assert images[1] is None and images[2] is None
    assert stats.counts == {"unreadable": 1, "missing": 1}
    # Without stats given, a dataset counts its skips in its own.
    alone = ImageTextDataset(manifest, height=16, width=16)
    assert alone[2] is None and alone.stats.counts == {"missing": 1}
    videos = VideoClipDataset(manifest, num_frames=4, fps=4, height=16, width=16)
    assert videos[2] is None and videos.stats.counts == {"missing": 1}


def test_check_data_reports_skips_and_finds_files_cut_short(tmp_path, media):
    names = ["good", "missing", "text", "cut", "cut_faststart", "cut_late", "short", "audio", "vfr", "no_duration"]
    video_manifest = write_manifest(tmp_path / "v.jsonl", [media[n] for n in names])
    image_manifest = write_manifest(tmp_path / "i.jsonl", [media["png"], media["corrupt_png"]])
    for num_workers in (0, 2):
        report = check_data(video_manifest, image_manifest, 8, 8, 16, 16, num_workers=num_workers)
        assert report["videos"] == 3 and report["images"] == 1
        assert report["skipped"].counts == {
            "missing": 1, "unreadable": 3, "truncated": 2, "too short": 1, "no video stream": 1,
        }
        assert report["skipped"].examples["truncated"] == [media["cut_faststart"], media["cut_late"]]
    # Clips early in "cut_late" decode, so the first epochs of training might not meet its missing end.
    assert data._decode_clip(media["cut_late"], 8, 8, 16, 16, position=0.0).shape == (8, 3, 16, 16)
    assert check_data(None, image_manifest, 8, 8, 16, 16)["images"] == 1


def test_dataloader_workers_collate_skipping_and_report_skips(tmp_path, media):
    stats = SkipStats()
    paths = [media["good"], media["missing"], media["vfr"], media["text"]] * 2
    videos = VideoClipDataset(write_manifest(tmp_path / "m.jsonl", paths), 4, 4, 16, 16, stats)
    loader = DataLoader(videos, batch_size=2, num_workers=2, collate_fn=collate_skipping)
    for epoch in range(2):
        videos.set_epoch(epoch)
        seen = []
        for batch in loader:
            assert batch["pixel_values"].shape == (1, 4, 3, 16, 16) and len(batch["captions"]) == 1
            seen += batch["paths"]
            stats.merge(batch.pop("skipped"))
        assert sorted(seen) == sorted([media["good"], media["vfr"]] * 2)
    # Each epoch skips the missing and the unreadable file twice; none is lost or counted twice across workers.
    assert stats.counts == {"missing": 4, "unreadable": 4}
    assert collate_skipping([None, None]) is None
    in_process = collate_skipping([videos[0], None])
    assert in_process["pixel_values"].shape == (1, 4, 3, 16, 16) and in_process["skipped"].total() == 0


def build_shard(path, samples, cut=False):
    """A tar of (name, bytes) members; a name ending in "/" is a folder."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in samples:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
            tar.addfile(info, io.BytesIO(content))
    content = buffer.getvalue()
    path.write_bytes(content[: len(content) * 3 // 5] if cut else content)
    return str(path)


def read(path):
    with open(path, "rb") as file:
        return file.read()


@pytest.fixture(scope="module")
def shards(media, tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    good, png = read(media["good"]), read(media["png"])
    return [
        build_shard(root / "a.tar", [("000.mp4", good), ("000.txt", b"clip zero\n"), ("001.png", png),
                                     ("001.txt", b"an image"), ("002.mp4", good), ("002.txt", b"clip two")]),
        build_shard(root / "b.tar", [("003.mp4", b"garbage"), ("003.txt", b"broken"), ("004.mp4", good),
                                     ("005.mp4", good), ("005.txt", b"clip five"), ("006.mp4", good),
                                     ("006.txt", b"escape \x1b[31m")]),
    ]


def test_tar_shards_group_members_and_skip_bad_samples(shards, caplog):
    stats = SkipStats()
    videos = TarShardDataset(shards, "video", 4, 4, 16, 16, stats=stats)
    with caplog.at_level("DEBUG", logger=data.logger.name):
        items = list(videos)
    problem = data.caption_problem("escape \x1b[31m")
    assert problem and f"skipped {shards[1]}#006: bad caption ({problem})\n" in caplog.text
    assert sorted(item["caption"] for item in items) == ["clip five", "clip two", "clip zero"]
    assert all(item["pixel_values"].shape == (4, 3, 16, 16) for item in items)
    assert stats.counts == {"no video": 1, "unreadable": 1, "no caption": 1, "bad caption": 1}
    assert stats.examples["no caption"] == [f"{shards[1]}#004"]
    assert stats.examples["bad caption"] == [f"{shards[1]}#006"]
    images = list(TarShardDataset(shards[0], "image", None, None, 16, 16))
    assert [(item["caption"], item["pixel_values"].shape) for item in images] == [("an image", (1, 3, 16, 16))]


def test_tar_shards_split_across_workers_and_ranks(shards, monkeypatch):
    def keys(dataset, num_workers):
        batches = DataLoader(dataset, batch_size=1, num_workers=num_workers, collate_fn=collate_skipping)
        return [batch["paths"][0].rsplit("#", 1)[1] for batch in batches]

    two_shards = TarShardDataset(shards, "video", 4, 4, 16, 16)
    assert sorted(keys(two_shards, 2)) == ["000", "002", "005"]  # one shard per worker
    one_shard = TarShardDataset(shards[:1], "video", 4, 4, 16, 16)
    assert sorted(keys(one_shard, 2)) == ["000", "002"]  # fewer shards than workers: samples dealt out instead
    per_rank = []
    for rank in range(2):
        monkeypatch.setattr(data, "_rank_and_world_size", lambda: (rank, 2))
        per_rank.append(keys(two_shards, 0))
    assert sorted(per_rank[0] + per_rank[1]) == ["000", "002", "005"] and all(per_rank)
    # Joint training: the processes that read videos split the video shards among themselves, whatever the
    # distributed world is.
    monkeypatch.setattr(data, "_rank_and_world_size", lambda: (3, 4))
    own = [keys(TarShardDataset(shards, "video", 4, 4, 16, 16, rank=r, world_size=2), 0) for r in range(2)]
    assert own == per_rank
    with pytest.raises(ValueError, match="rank and world_size"):
        TarShardDataset(shards, "video", 4, 4, 16, 16, rank=2, world_size=2)


def test_missing_and_truncated_shards_are_counted(media, tmp_path, caplog):
    good = read(media["good"])
    cut = build_shard(tmp_path / "cut.tar", [("000.mp4", good), ("000.txt", b"kept"), ("001.mp4", good),
                                             ("001.txt", b"lost")], cut=True)
    stats = SkipStats()
    with caplog.at_level("DEBUG", logger=data.logger.name):
        items = list(TarShardDataset([cut, str(tmp_path / "gone.tar")], "video", 4, 4, 16, 16, stats=stats))
    assert f"skipped {cut}: unreadable shard (unexpected end of data)\n" in caplog.text
    assert [item["caption"] for item in items] == ["kept"]
    assert stats.counts == {"unreadable shard": 1, "missing": 1}
    assert stats.examples == {"unreadable shard": [cut], "missing": [str(tmp_path / "gone.tar")]}
    with pytest.raises(FileNotFoundError, match="nothing-\\*.tar"):
        TarShardDataset(str(tmp_path / "nothing-*.tar"), "video", 4, 4, 16, 16)


def test_tar_samples_with_compound_names_and_each_skip_named(media, tmp_path, caplog):
    good = read(media["good"])
    # A folder member and a file without an extension belong to no sample and are passed over.
    shard = build_shard(tmp_path / "c.tar", [("clips/", b""), ("clips/007.clip.mp4", good), ("README", b"notes"),
                                             ("clips/007.txt", b"compound"), ("008.txt", b"no media"),
                                             ("009.mp4", good), ("009.txt", b"\xff\xfe"), ("010.mp4", good)])
    stats = SkipStats()
    with caplog.at_level("DEBUG", logger=data.logger.name):
        items = list(TarShardDataset(shard, "video", 4, 4, 16, 16, stats=stats))
    assert [(item["caption"], item["path"]) for item in items] == [("compound", f"{shard}#clips/007")]
    assert stats.counts == {"no video": 1, "unreadable caption": 1, "no caption": 1}
    assert stats.examples == {"no video": [f"{shard}#008"], "unreadable caption": [f"{shard}#009"],
                              "no caption": [f"{shard}#010"]}
    # The debug log says why: which members a sample had, the decoder's complaint, or just the reason.
    assert f"skipped {shard}#008: no video (members: ['txt'])\n" in caplog.text
    assert f"skipped {shard}#009: unreadable caption ('utf-8' codec can't decode" in caplog.text
    assert f"skipped {shard}#010: no caption\n" in caplog.text


def test_tar_clip_starts_depend_on_seed_epoch_and_key(media, tmp_path):
    good = read(media["good"])
    shard = build_shard(tmp_path / "same.tar", [(f"{key}.{ext}", content) for key in range(100, 108)
                                                for ext, content in (("mp4", good), ("txt", b"the same clip"))])

    def starts(seed=0, epoch=0):
        dataset = TarShardDataset(shard, "video", 4, 4, 16, 16, seed=seed)
        dataset.set_epoch(epoch)
        return [frame_indices(item["pixel_values"])[0] for item in dataset]

    first = starts()
    assert len(set(first)) > 1  # each key draws its own start, wherever it sits in the shard
    assert starts() == first
    assert starts(seed=1) != first and starts(epoch=1) != first


def test_tar_shard_order_follows_seed_and_epoch(media, tmp_path):
    good = read(media["good"])
    many = [build_shard(tmp_path / f"s{i}.tar", [(f"{i}00.mp4", good), (f"{i}00.txt", b"a clip")]) for i in range(6)]

    def order(epoch=None, **options):
        dataset = TarShardDataset(many, "video", 4, 4, 16, 16, **options)
        if epoch is not None:
            dataset.set_epoch(epoch)
        return [item["path"].rsplit("#", 1)[1] for item in dataset]

    as_given = order(shuffle_shards=False)
    assert as_given == ["000", "100", "200", "300", "400", "500"]
    shuffled = order()
    assert sorted(shuffled) == as_given and shuffled != as_given
    assert order(seed=0, epoch=0) == shuffled  # the defaults: seed 0, epoch 0
    assert order(seed=1) != shuffled and order(epoch=1) != shuffled


def test_one_shard_is_dealt_out_by_sample_position_and_reported_once(media, tmp_path):
    good = read(media["good"])
    one = build_shard(tmp_path / "one.tar", [(f"{key}.{ext}", content) for key in range(8)
                                             for ext, content in (("mp4", good), ("txt", b"a clip"))])
    gone = str(tmp_path / "gone.tar")

    def read_as(rank, world_size):
        stats = SkipStats()
        dataset = TarShardDataset([gone, one], "video", 4, 4, 16, 16, stats=stats, shuffle_shards=False,
                                  rank=rank, world_size=world_size)
        return [item["path"].rsplit("#", 1)[1] for item in dataset], stats.examples

    # Fewer shards than readers: every reader reads every shard, keeps every third sample, and only the first
    # reader reports a missing shard.
    assert [read_as(rank, 3) for rank in range(3)] == [
        (["0", "3", "6"], {"missing": [gone]}), (["1", "4", "7"], {}), (["2", "5"], {})]
    # As many shards as readers or more: each reader reads whole shards of its own.
    other = build_shard(tmp_path / "other.tar", [("8.mp4", good), ("8.txt", b"a clip")])
    whole = [[item["path"].rsplit("#", 1)[1] for item in TarShardDataset(
        [one, other], "video", 4, 4, 16, 16, shuffle_shards=False, rank=rank, world_size=2)] for rank in range(2)]
    assert whole == [[str(key) for key in range(8)], ["8"]]
    # The readers are the ranks' DataLoader workers: rank 1 of 2 with two workers is readers 2 and 3 of 4.
    dataset = TarShardDataset([one], "video", 4, 4, 16, 16, rank=1, world_size=2)
    batches = DataLoader(dataset, batch_size=1, num_workers=2, collate_fn=collate_skipping)
    assert sorted(batch["paths"][0].rsplit("#", 1)[1] for batch in batches) == ["2", "3", "6", "7"]


@pytest.mark.parametrize("args, message", [
    (([], "video", 4, 4), "TarShardDataset needs at least one shard."),
    ((["a.tar"], "audio", 4, 4), 'kind must be "video" or "image"; got \'audio\'.'),
    ((["a.tar"], "video", None, 4), "num_frames must be at least 1 and fps positive; got 0 frames at 4 fps."),
    ((["a.tar"], "video", 4, None), "num_frames must be at least 1 and fps positive; got 4 frames at 0.0 fps."),
])
def test_tar_shard_dataset_refusals(args, message):
    with pytest.raises(ValueError) as error:
        TarShardDataset(*args, 16, 16)
    assert str(error.value) == message
