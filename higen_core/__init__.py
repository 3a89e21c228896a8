"""HiGen Studio's library: HiGen's network, two-stage pipeline, conditioning, converter, training and evaluation."""

from .unet_higen import HiGenUNet3DModel, HiGenUNet3DOutput
