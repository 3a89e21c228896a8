# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""Writing and reading HiGen's outputs: MP4 (H.264) with its settings embedded, looping GIF, PNG and settings JSON.

    frames = pipe.animate(prior, prompt, output_type="np").frames[0]       # (F, H, W, 3) in [0, 1]
    export_mp4(frames, "corgi.mp4", fps=8, metadata=settings)
    read_mp4_metadata("corgi.mp4") == settings                             # True

Every writer goes through a temporary file beside the target and renames it at the end, so a reader (the studio's
file server, a browser, another process) sees either the previous file or the complete new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import av.filter
import numpy as np
import PIL.Image
import torch
from av.video.reformatter import ColorRange, Colorspace

# x264's constant-quality mode: 17-18 is commonly taken as visually lossless; "slow" buys a smaller file at the same
# quality and costs well under a second for a clip of HiGen's size.
MP4_CRF = 17
MP4_PRESET = "slow"
# ffmpeg's value for BT.709 in colorspace, color_primaries and color_trc alike.
_AVCOL_BT709 = 1


@contextlib.contextmanager
def _atomic_target(path) -> Iterator[Path]:
    """Yield a fresh temporary path beside `path`; once the body returns, move it onto `path` in one rename. On an
    error the temporary file is removed and `path` is left as it was."""
    path = Path(path)
    # Same folder, so that the rename stays on one file system and is atomic. Hidden and random, so that folder
    # listings skip it and concurrent writers of the same target never share one.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def to_uint8_frames(frames) -> np.ndarray:
    """Frames as uint8 (F, H, W, 3) RGB.

    Takes a list of PIL images (or of (H, W, 3) arrays), a numpy (F, H, W, 3) array, float in [0, 1] or uint8, or a
    torch (F, 3, H, W) tensor, float in [0, 1] or uint8: the pipeline's "pil", "np" and "pt" outputs for one video.
    Floats are clipped to [0, 1] and rounded.
    """
    if isinstance(frames, torch.Tensor):
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"A frames tensor must be (F, 3, H, W); got shape {tuple(frames.shape)}.")
        frames = frames.detach().cpu().permute(0, 2, 3, 1)
        # numpy has no bfloat16: widen every float type first.
        frames = frames.numpy() if frames.dtype == torch.uint8 else frames.float().numpy()
    elif isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError("There are no frames.")
        frames = np.stack([np.asarray(f.convert("RGB")) if isinstance(f, PIL.Image.Image) else np.asarray(f)
                           for f in frames])
    else:
        frames = np.asarray(frames)

    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise ValueError(f"Frames must be (F, H, W, 3) RGB with at least one pixel; got shape {frames.shape}.")
    if frames.dtype == np.uint8:
        return np.ascontiguousarray(frames)
    if not np.issubdtype(frames.dtype, np.floating):
        raise TypeError(f"Frames must be uint8 or float in [0, 1]; got {frames.dtype}.")
    if not np.isfinite(frames).all():
        # Usually a float16 overflow in the VAE: saying so beats writing a silently black video.
        raise ValueError("The frames contain NaN or infinite values.")
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _check_fps(fps: float) -> None:
    if not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number; got {fps!r}.")


def _check_factor(factor, name: str) -> None:
    if factor not in (1, 2, 3, 4):
        raise ValueError(f"The {name} factor must be 1, 2, 3 or 4; got {factor!r}.")


def _filtered(frames: np.ndarray, fps: float, description: str) -> np.ndarray:
    """Run uint8 (F, H, W, 3) frames at `fps` through an ffmpeg filter chain (libavfilter, through PyAV)."""
    graph = av.filter.Graph()
    rate = Fraction(fps).limit_denominator(1001)
    source = graph.add_buffer(width=frames.shape[2], height=frames.shape[1], format="rgb24", time_base=1 / rate)
    chain = [source]
    for name, arguments in (part.split("=", 1) for part in description.split(",")):
        chain.append(graph.add(name, arguments))
    chain.append(graph.add("format", "rgb24"))
    chain.append(graph.add("buffersink"))
    graph.link_nodes(*chain).configure()
    out = []
    for index, pixels in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        frame.pts, frame.time_base = index, 1 / rate
        graph.push(frame)
        out += _drain(graph)
    graph.push(None)  # end of stream: the filters give what they held back
    out += _drain(graph)
    return np.stack([frame.to_ndarray(format="rgb24") for frame in out])


def _drain(graph) -> list:
    frames = []
    while True:
        try:
            frames.append(graph.pull())
        except (av.BlockingIOError, av.EOFError):
            return frames


def interpolate_frames(frames, fps: float, factor: int) -> np.ndarray:
    """`factor` times the frame rate by ffmpeg's motion-compensated interpolation (minterpolate, bidirectional
    motion estimation with overlapped blocks): (F, H, W, 3) uint8 at `fps` -> about F * factor frames at
    `fps * factor`, the same duration, smoother. factor 1 returns the frames as they are."""
    _check_fps(fps)
    frames = to_uint8_frames(frames)
    _check_factor(factor, "interpolation")
    if factor == 1:
        return frames
    # The filter keeps its last input frames for look-ahead; frames held at the end let it reach the last one, and
    # F * factor frames at the new rate last as long as the F did.
    padded = np.concatenate([frames, np.repeat(frames[-1:], 3, axis=0)])
    rate = Fraction(fps * factor).limit_denominator(1001)
    # 8-pixel blocks: the default 16 misses the small motions of small videos (seen at 48x32).
    out = _filtered(padded, fps, f"minterpolate=fps={rate}:mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1:mb_size=8")
    return out[:len(frames) * factor]


def upscale_frames(frames, factor: int) -> np.ndarray:
    """(F, H, W, 3) -> (F, H * factor, W * factor, 3) uint8, resampled with ffmpeg's Lanczos filter. factor 1 returns
    the frames as they are."""
    frames = to_uint8_frames(frames)
    _check_factor(factor, "upscaling")
    if factor == 1:
        return frames
    height, width = frames.shape[1:3]
    return _filtered(frames, 8, f"scale={width * factor}:{height * factor}:flags=lanczos+accurate_rnd+full_chroma_int")


def export_mp4(frames, path, fps: float = 8, metadata: dict | None = None, crf: int = MP4_CRF,
               preset: str = MP4_PRESET) -> str:
    """Write `frames` (see `to_uint8_frames`) as an H.264 MP4 at `path` and return the path.

    The stream is yuv420p, tagged BT.709, with the index up front ("faststart"): what every browser plays, and
    streams before it has fully downloaded. yuv420p needs an even width and height, so an odd size is padded by
    repeating the last row or column (the file is then one pixel larger). `metadata`, a JSON-serialisable dict such as
    the generation settings, is stored as JSON in the container's "comment" tag; `read_mp4_metadata` returns it.
    `crf`: x264's constant quality, 0 (lossless) to 51; lower is better and larger. `preset`: x264's speed, from
    "ultrafast" to "veryslow" (slower: a smaller file at the same quality).
    """
    _check_fps(fps)
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise ValueError(f"crf must be a whole number from 0 to 51; got {crf!r}.")
    frames = to_uint8_frames(frames)
    # Serialised before anything is written, so that a value JSON cannot hold fails with no file left behind.
    # ASCII escapes keep the tag clean whatever a reader assumes about its encoding; allow_nan=False keeps it JSON.
    comment = None if metadata is None else json.dumps(metadata, ensure_ascii=True, allow_nan=False)
    _, height, width, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    rate = Fraction(fps).limit_denominator(1001)  # 8 -> 8/1, 29.97 -> 2997/100

    with _atomic_target(path) as tmp:
        # The temporary name has no ".mp4", so the format is named.
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            if comment is not None:
                container.metadata["comment"] = comment
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            stream.options = {"crf": str(crf), "preset": preset}
            # Tag the stream BT.709 and convert with the same matrix below: untagged streams leave players guessing
            # between BT.601 and BT.709, which shifts the colours.
            codec = stream.codec_context
            codec.colorspace = codec.color_primaries = codec.color_trc = _AVCOL_BT709
            codec.color_range = ColorRange.MPEG
            for index, pixels in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(
                    format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG)
                frame.pts = index
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))  # flush the frames x264 still holds for look-ahead
    return str(path)


def _gif_durations_ms(num_frames: int, fps: float) -> list[int]:
    """Per-frame delays. GIF stores centiseconds, so 1000/fps is rarely exact (125 ms at 8 fps); rounding each frame
    end on the 10 ms grid, rather than each delay, keeps the clip's total length right (120, 130, 120, ... at 8 fps)."""
    ends = [round((i + 1) * 100 / fps) * 10 for i in range(num_frames)]
    return [max(end - start, 10) for start, end in zip([0] + ends[:-1], ends)]


def export_gif(frames, path, fps: float = 8) -> str:
    """Write `frames` (see `to_uint8_frames`) as a GIF that loops forever and return the path.

    All frames share one 256-colour palette drawn from the whole clip, without dithering: per-frame palettes and
    dither patterns change from frame to frame and make flat areas flicker. PIL merges consecutive identical frames
    into one longer frame, so a still clip has fewer frames; it plays for the same time.
    """
    _check_fps(fps)
    frames = to_uint8_frames(frames)
    num_frames, height, width, _ = frames.shape
    # The palette comes from all frames stacked into one tall image; the fast octree method takes a fraction of a
    # second on a 32-frame clip where median cut takes seconds, for about the same error.
    mosaic = PIL.Image.fromarray(frames.reshape(num_frames * height, width, 3))
    palette = mosaic.quantize(256, method=PIL.Image.Quantize.FASTOCTREE)
    images = [PIL.Image.fromarray(f).quantize(palette=palette, dither=PIL.Image.Dither.NONE) for f in frames]
    with _atomic_target(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], loop=0,
                       duration=_gif_durations_ms(num_frames, fps), optimize=False)
    return str(path)


def export_png(image, path) -> str:
    """Write one image as PNG and return the path: a PIL image (saved in its own mode, alpha included), a numpy
    (H, W, 3) array, float in [0, 1] or uint8, or a torch (3, H, W) tensor."""
    if not isinstance(image, PIL.Image.Image):
        image = PIL.Image.fromarray(to_uint8_frames(image[None])[0])
    with _atomic_target(path) as tmp:
        image.save(tmp, format="PNG")
    return str(path)


def read_mp4_metadata(path) -> dict | None:
    """The settings `export_mp4` embedded in the MP4 at `path`, or None if it has none (no comment, or a comment that
    is not a JSON object, e.g. one written by another tool)."""
    with av.open(str(path)) as container:
        comment = container.metadata.get("comment")
    if comment is None:
        return None
    try:
        settings = json.loads(comment)
    except json.JSONDecodeError:
        return None
    return settings if isinstance(settings, dict) else None


def read_mp4_frames(path) -> np.ndarray:
    """Every frame of the first video stream of `path`, decoded to uint8 (F, H, W, 3) RGB."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream.")
        # Converted with the matrix the stream is tagged with (BT.709 for export_mp4's files).
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    if not frames:
        raise ValueError(f"{path} has a video stream with no frames.")
    return np.stack(frames)


def write_settings_json(settings: dict, path) -> str:
    """Write `settings` as indented, UTF-8 JSON at `path` (e.g. beside the video it describes) and return the path."""
    text = json.dumps(settings, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    with _atomic_target(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return str(path)
