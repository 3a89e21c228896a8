"""HiGen Studio's library: HiGen's network, two-stage pipeline, conditioning, converter, training and evaluation."""

from .conditioning import appearance_matrix, appearance_matrix_from_features, motion_factors_from_latents
from .loading import PipelineLoadError, load_pipeline, set_cpu_threads
from .settings import HiGenSettings, MotionExample, SettingsError
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
    "HiGenPipeline", "HiGenPipelineOutput", "HiGenPriorOutput", "HiGenSettings", "HiGenUNet3DModel",
    "HiGenUNet3DOutput", "HiGenVideoOutput", "MotionExample", "PipelineLoadError", "SettingsError",
    "appearance_matrix", "appearance_matrix_from_features", "default_scheduler", "dpm_scheduler", "load_pipeline",
    "motion_factors_from_latents", "set_cpu_threads",
]
