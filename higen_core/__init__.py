"""HiGen Studio's library: HiGen's network, two-stage pipeline, conditioning, converter, training and evaluation."""

from .conditioning import appearance_matrix, appearance_matrix_from_features, motion_factors_from_latents
from .unet_higen import HiGenUNet3DModel, HiGenUNet3DOutput
from .pipeline_higen import (
    HiGenPipeline,
    HiGenPipelineOutput,
    HiGenPriorOutput,
    HiGenVideoOutput,
    default_scheduler,
    dpm_scheduler,
)

__all__ = [
    "HiGenPipeline", "HiGenPipelineOutput", "HiGenPriorOutput", "HiGenUNet3DModel", "HiGenUNet3DOutput",
    "HiGenVideoOutput", "appearance_matrix", "appearance_matrix_from_features", "default_scheduler",
    "dpm_scheduler", "motion_factors_from_latents",
]
