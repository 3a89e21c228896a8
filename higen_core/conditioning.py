# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""HiGen's content-level conditions: motion factors and the appearance matrix (Section 3.3 of the paper).

* Training measures them on real clips: `motion_factors_from_latents` (frame-difference magnitudes of the VAE
  latents, by the measure the model records) and `appearance_matrix_from_features` (cosine similarities of
  self-supervised frame features, Eq. 3).
* Inference builds them from two numbers: a motion factor γm for every pair of frames, and `appearance_matrix` for an
  appearance factor γa (Eq. 4): similarity falls linearly from 1 to 1-γa across the clip.
"""

from __future__ import annotations

import torch


def _pad_rows(matrix: torch.Tensor, width: int) -> torch.Tensor:
    """(..., F, F) -> (..., F, width): the network's appearance MLP takes rows of a fixed width; shorter clips leave
    the rest of each row at zero."""
    frames = matrix.shape[-1]
    if frames > width:
        raise ValueError(
            f"{frames} frames need appearance rows of {frames} values, but the model's appearance width is {width}: "
            f"use at most {width} frames with this model."
        )
    return torch.nn.functional.pad(matrix, (0, width - frames))


def appearance_matrix(appearance_factor: float, num_frames: int, width: int | None = None) -> torch.Tensor:
    """The (F, width) appearance matrix for an appearance factor γa in [0, 1] (Eq. 4 of the paper).

    Frame i's similarity to frame j is 1 - γa * |i - j| / (F - 1): γa = 0 asks for no change of appearance,
    γa = 1 for the most change between the first and the last frame.
    """
    if not 0.0 <= float(appearance_factor) <= 1.0:
        raise ValueError(f"appearance_factor must be in [0, 1]; got {appearance_factor}.")
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1; got {num_frames}.")
    # The official construction: one ramp 1-γa ... 1 ... 1-γa of 2F-1 values, and row i is the window that puts
    # its peak (similarity 1) on the diagonal.
    rise = torch.linspace(1.0 - appearance_factor, 1.0, num_frames)[:-1]
    fall = torch.linspace(1.0, 1.0 - appearance_factor, num_frames)
    ramp = torch.cat([rise, fall])
    rows = torch.stack([ramp[num_frames - 1 - i : 2 * num_frames - 1 - i] for i in range(num_frames)])
    return _pad_rows(rows, width or num_frames)


# How a clip's motion factors are measured: "<latents>:<norm>". The latents are "scaled" (what the UNet denoises: the
# VAE's latents times its scaling factor) or "unscaled" (the VAE's own); the norm of each frame difference is "l2"
# (sqrt of the sum of squares: the paper's ||z_f - z_{f+1}||), "squared_l2" (the sum of squares) or "l1" (the sum of
# absolute values). A model records the measure it was trained with (its UNet's `motion_factor_measure`), because its
# γm means nothing on another scale. higen_core/training/README.md, "The motion factor's scale", says why the released
# model's is taken to be "scaled:l1".
MOTION_FACTOR_LATENTS = ("scaled", "unscaled")
MOTION_FACTOR_NORMS = ("l2", "squared_l2", "l1")
MOTION_FACTOR_MEASURES = tuple(f"{a}:{n}" for a in MOTION_FACTOR_LATENTS for n in MOTION_FACTOR_NORMS)


def check_motion_factor_measure(measure: str) -> tuple[str, str]:
    """'scaled:l2' -> ('scaled', 'l2'); anything else raises a ValueError listing the measures."""
    if measure not in MOTION_FACTOR_MEASURES:
        raise ValueError(f"motion_factor_measure must be one of {', '.join(MOTION_FACTOR_MEASURES)}; got {measure!r}.")
    latents, norm = measure.split(":")
    return latents, norm


def motion_factors_from_latents(latents: torch.Tensor, measure: str = "scaled:l2",
                                scaling_factor: float | None = None) -> torch.Tensor:
    """(B, C, F, H, W) clip latents, scaled as the UNet sees them -> (B, F-1) motion factors, each frame pair's
    difference measured by `measure` and rounded (γm_f = round(||z_f - z_{f+1}||_2) by default). An "unscaled"
    measure divides the latents by the VAE's `scaling_factor` first."""
    kind, norm = check_motion_factor_measure(measure)
    if latents.ndim != 5 or latents.shape[2] < 2:
        raise ValueError(f"latents must be (B, C, F, H, W) with F >= 2; got shape {tuple(latents.shape)}.")
    if kind == "unscaled":
        if not scaling_factor:
            raise ValueError(f"the measure {measure!r} needs the VAE's scaling_factor to unscale the latents.")
        latents = latents / scaling_factor
    differences = (latents[:, :, 1:] - latents[:, :, :-1]).float()  # (B, C, F-1, H, W)
    if norm == "l1":
        return differences.abs().sum(dim=(1, 3, 4)).round()
    squares = differences.pow(2).sum(dim=(1, 3, 4))
    return (squares if norm == "squared_l2" else squares.sqrt()).round()


def appearance_matrix_from_features(features: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """(B, F, D) per-frame features (e.g. DINO's) -> (B, F, width) cosine-similarity matrices (Eq. 3)."""
    if features.ndim != 3:
        raise ValueError(f"features must be (B, F, D); got shape {tuple(features.shape)}.")
    unit = torch.nn.functional.normalize(features.float(), dim=-1)
    similarity = unit @ unit.transpose(1, 2)  # (B, F, F)
    return _pad_rows(similarity, width or features.shape[1])
