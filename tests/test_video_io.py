"""video_io: what the CLI and the studio write must play in browsers and carry its settings."""

import json
from pathlib import Path

import av
import numpy as np
import PIL.Image
import pytest
import torch

from higen_core import video_io

SETTINGS = {"prompt": "a corgi ☃ on the \"beach\"", "motion_factor": 500.0, "seed": 7, "batch": {"index": 1}}


def moving_gradient(frames: int = 5, height: int = 16, width: int = 24) -> np.ndarray:
    """(F, H, W, 3) floats in [0, 1]: smooth, so that 4:2:0 chroma keeps it, and different in every frame."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([
        np.stack([x / max(width - 1, 1), y / max(height - 1, 1), np.full_like(x, 0.2 + 0.15 * t, dtype=float)], -1)
        for t in range(frames)
    ]).astype(np.float32)


def few_colours(frames: int = 5) -> np.ndarray:
    """A moving gradient of 6 x 6 x 5 = 180 colours: fits one GIF palette, so a GIF must keep it exactly."""
    clip = np.round(moving_gradient(frames) * 5) / 5
    clip[..., 2] = (np.arange(frames) / (frames - 1))[:, None, None]
    return clip


def leftovers(folder, keep) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_to_uint8_frames_takes_every_pipeline_output():
    clip = moving_gradient()
    expected = (clip * 255).round().astype(np.uint8)
    pils = [PIL.Image.fromarray(f) for f in expected]
    tensor = torch.from_numpy(clip).permute(0, 3, 1, 2)
    uint8_tensor = torch.from_numpy(expected).permute(0, 3, 1, 2)
    for frames in (clip, expected, pils, tensor, tensor.to(torch.bfloat16), uint8_tensor):
        out = video_io.to_uint8_frames(frames)
        assert out.dtype == np.uint8 and out.shape == (5, 16, 24, 3)
        np.testing.assert_allclose(out.astype(int), expected.astype(int), atol=1)
    assert video_io.to_uint8_frames(np.full((1, 2, 2, 3), 1.5))[0, 0, 0, 0] == 255  # clipped, not wrapped

    with pytest.raises(ValueError, match="F, H, W, 3"):
        video_io.to_uint8_frames(clip[0])
    with pytest.raises(ValueError, match="F, 3, H, W"):
        video_io.to_uint8_frames(tensor.permute(0, 2, 3, 1))
    with pytest.raises(ValueError, match="NaN"):
        video_io.to_uint8_frames(np.full((1, 2, 2, 3), np.nan))


def test_mp4_is_browser_h264_with_the_frames_and_the_settings(tmp_path):
    clip = moving_gradient(height=64, width=96)
    path = tmp_path / "clip.mp4"
    assert video_io.export_mp4(clip, path, fps=8, metadata=SETTINGS) == str(path)

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == (96, 64)
        assert stream.average_rate == 8
    frames = video_io.read_mp4_frames(path)
    assert frames.shape == (5, 64, 96, 3) and frames.dtype == np.uint8
    # High quality and the right colours: what is left is mostly 4:2:0's halved chroma resolution.
    assert np.abs(frames.astype(int) - video_io.to_uint8_frames(clip)).mean() < 2.5
    assert video_io.read_mp4_metadata(path) == SETTINGS
    assert leftovers(tmp_path, {"clip.mp4"}) == []  # the temporary file was renamed, not left behind


@pytest.mark.parametrize("size", [(16, 16), (15, 9), (1, 1)])
def test_mp4_pads_odd_and_tiny_sizes_to_even(tmp_path, size):
    height, width = size
    path = video_io.export_mp4(moving_gradient(3, height, width), tmp_path / "small.mp4")
    frames = video_io.read_mp4_frames(path)
    assert frames.shape == (3, height + height % 2, width + width % 2, 3)
    assert video_io.read_mp4_metadata(path) is None  # nothing embedded, nothing read back


def test_mp4_comment_from_another_tool_is_not_settings(tmp_path):
    path = tmp_path / "other.mp4"
    with av.open(str(path), "w") as container:
        container.metadata["comment"] = "made with something else"
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        black = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8)).reformat(format="yuv420p")
        container.mux(stream.encode(black))
        container.mux(stream.encode(None))
    assert video_io.read_mp4_metadata(path) is None


def test_a_failed_write_keeps_the_old_file_and_leaves_no_debris(tmp_path):
    path = tmp_path / "clip.mp4"
    video_io.export_mp4(moving_gradient(), path, metadata={"take": 1})
    before = path.read_bytes()

    with pytest.raises(TypeError):  # not JSON: refused before anything is written
        video_io.export_mp4(moving_gradient(), path, metadata={"take": object()})
    with pytest.raises(av.error.FFmpegError):  # the encoder fails after the file was opened
        video_io.export_mp4(moving_gradient(), path, metadata={"take": 2}, preset="no-such-preset")
    assert path.read_bytes() == before
    assert leftovers(tmp_path, {"clip.mp4"}) == []

    video_io.export_mp4(moving_gradient(2), path, metadata={"take": 3})  # a new take replaces the old one whole
    assert video_io.read_mp4_metadata(path) == {"take": 3} and len(video_io.read_mp4_frames(path)) == 2


def test_gif_loops_forever_with_every_frame(tmp_path):
    clip = few_colours()
    path = video_io.export_gif(clip, tmp_path / "clip.gif", fps=8)
    with PIL.Image.open(path) as gif:
        assert gif.info["loop"] == 0 and gif.n_frames == 5 and gif.size == (24, 16)
        durations, frames = [], []
        for index in range(gif.n_frames):
            gif.seek(index)
            durations.append(gif.info["duration"])
            frames.append(np.asarray(gif.convert("RGB")))
    assert abs(sum(durations) - 5 * 1000 / 8) <= 10  # 8 fps on GIF's 10 ms grid
    np.testing.assert_array_equal(np.stack(frames), video_io.to_uint8_frames(clip))  # one palette for all frames
    assert leftovers(tmp_path, {"clip.gif"}) == []


def test_png_and_settings_json(tmp_path):
    image = moving_gradient(1)[0]
    for name, value in (("np", image), ("pt", torch.from_numpy(image).permute(2, 0, 1)),
                        ("pil", PIL.Image.fromarray((image * 255).round().astype(np.uint8)))):
        path = video_io.export_png(value, tmp_path / f"{name}.png")
        with PIL.Image.open(path) as png:
            np.testing.assert_array_equal(np.asarray(png.convert("RGB")), video_io.to_uint8_frames(image[None])[0])

    path = video_io.write_settings_json(SETTINGS, tmp_path / "clip.json")
    text = (tmp_path / "clip.json").read_text(encoding="utf-8")
    assert json.loads(text) == SETTINGS
    assert "☃" in text and '\n  "seed": 7' in text  # readable: indented, characters as they are
    assert path == str(tmp_path / "clip.json")


def moving_square(frames: int = 8, step: int = 4) -> np.ndarray:
    """(F, 32, 48, 3) uint8: a white 8x8 square moving `step` pixels right a frame on black."""
    clip = np.zeros((frames, 32, 48, 3), np.uint8)
    for t in range(frames):
        clip[t, 8:16, 4 + step * t:12 + step * t] = 255
    return clip


def left_edges(clip: np.ndarray) -> list[int]:
    return [int(np.flatnonzero(frame[12, :, 0] > 128).min()) for frame in clip]


def test_interpolation_puts_the_motion_in_between_and_keeps_the_duration():
    clip = moving_square()
    smoother = video_io.interpolate_frames(clip, fps=8, factor=2)
    # 16 frames at 16 fps last as long as 8 at 8: each in-between frame has the square half way, the originals stay.
    assert smoother.shape == (16, 32, 48, 3)
    assert left_edges(smoother)[:15] == list(range(4, 34, 2))
    np.testing.assert_array_equal(smoother[::2][:7], clip[:7])
    assert video_io.interpolate_frames(clip, 8, 4).shape[0] == 32
    np.testing.assert_array_equal(video_io.interpolate_frames(clip, 8, 1), clip)
    with pytest.raises(ValueError, match="interpolation factor must be 1, 2, 3 or 4; got 5"):
        video_io.interpolate_frames(clip, 8, 5)


def test_upscaling_resamples_every_frame_with_lanczos():
    clip = video_io.to_uint8_frames(moving_gradient())
    larger = video_io.upscale_frames(clip, 2)
    assert larger.shape == (5, 32, 48, 3)
    # A smooth gradient stays smooth: each 2x2 block averages back to about its source pixel.
    pooled = larger.reshape(5, 16, 2, 24, 2, 3).mean(axis=(2, 4))
    assert np.abs(pooled - clip).mean() < 1.5
    with pytest.raises(ValueError, match="upscaling factor must be 1, 2, 3 or 4; got 0"):
        video_io.upscale_frames(clip, 0)


def test_mp4_quality_is_x264s_crf(tmp_path):
    clip = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)  # noise: size follows quality
    sizes = []
    for crf in (10, 17, 30):
        sizes.append(Path(video_io.export_mp4(clip, tmp_path / f"{crf}.mp4", crf=crf)).stat().st_size)
    assert sizes[0] > sizes[1] > sizes[2]
    with pytest.raises(ValueError, match="crf must be a whole number from 0 to 51; got 52"):
        video_io.export_mp4(clip, tmp_path / "bad.mp4", crf=52)
    assert not (tmp_path / "bad.mp4").exists()
