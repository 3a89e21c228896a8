# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""The live preview of a running animation: a linear latent-to-RGB map fitted to the prior, and the writer that turns
the step callback's clean prediction into a small MP4 every few steps, beside the denoising."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from higen_core import video_io


def latent_rgb_projection(latents: torch.Tensor, image: PIL.Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear map from the model's latents to RGB in [-1, 1]: (weight (3, C), bias (3,)), fitted by least squares to
    a prior's latents (1, C, h, w) and its own decoded picture at the latents' size. Every frame of an animation grows
    out of its prior, so the map previews them well at the cost of a matrix product."""
    channels, height, width = latents.shape[1:]
    target = torch.from_numpy(np.array(image.convert("RGB").resize((width, height), PIL.Image.BOX)))
    target = target.reshape(-1, 3).float() / 127.5 - 1  # (h*w, 3)
    design = torch.cat([latents[0].reshape(channels, -1).T.float(), torch.ones(height * width, 1)], dim=1)
    solution = torch.linalg.lstsq(design, target).solution  # (C+1, 3)
    return solution[:-1].T.contiguous(), solution[-1].contiguous()


@dataclass
class PreviewWriter:
    """Writes what an animation is becoming, as a small MP4 in `folder` ("preview-<step>-of-<steps>.mp4", the older
    ones removed): the first video's clean prediction through the prior's linear latent-to-RGB map, enlarged
    `scale` times. The encoding runs on a thread of its own while denoising goes on; a preview due while the last
    one is still being written is skipped, so the job never waits for one. Plain values only, so that it crosses
    into a ZeroGPU worker."""

    folder: Path
    weight: torch.Tensor  # (3, C)
    bias: torch.Tensor  # (3,)
    total: int
    fps: float
    scale: int
    _writing: threading.Thread | None = field(default=None, init=False, repr=False)

    def __call__(self, step: int, denoised: torch.Tensor) -> None:
        if self._writing is not None and self._writing.is_alive():
            return
        rgb = torch.einsum("cfhw,rc->fhwr", denoised[0].float().cpu(), self.weight) + self.bias  # (F, h, w, 3)
        frames = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        frames = frames.repeat_interleave(self.scale, 1).repeat_interleave(self.scale, 2).numpy()
        self._writing = threading.Thread(target=self._write, args=(step, frames), daemon=True)
        self._writing.start()

    def _write(self, step: int, frames: np.ndarray) -> None:
        self.folder.mkdir(exist_ok=True)
        path = self.folder / f"preview-{step:04d}-of-{self.total:04d}.mp4"
        # x264's fastest preset at a modest quality: a preview is seen once.
        video_io.export_mp4(frames, path, fps=self.fps, crf=28, preset="ultrafast")
        for old in self.folder.glob("preview-*.mp4"):
            if old != path:
                old.unlink(missing_ok=True)

    def close(self) -> None:
        """Wait for the preview being written, if any: called where the job ends, before its folder goes."""
        if self._writing is not None:
            self._writing.join()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_writing": None}  # a thread does not cross into another process
