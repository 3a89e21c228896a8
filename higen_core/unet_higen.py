# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""HiGen's 3D-UNet (Qing et al., "Hierarchical Spatio-temporal Decoupling for Text-to-Video Generation", CVPR 2024).

One network does both of HiGen's steps:

* **spatial reasoning** – a single frame: every temporal layer is skipped exactly (its output is its input), so the
  network is an image model that turns text into the *spatial prior*;
* **temporal reasoning** – F frames: the full network, guided by the spatial prior (a zero-initialised copy of the
  input stem, added after the stem on every frame), by *motion factors* and by an *appearance matrix* (two
  zero-initialised MLPs whose outputs are added to each frame's timestep embedding).

The layout follows diffusers' ``UNet3DConditionModel`` (ModelScope T2V, the model HiGen builds on), so the names of
its parameters are the ones diffusers users know; ``higen_core.convert`` maps the released VGen checkpoint onto them.
The configuration defaults are those of the released model (``cvpr2024.t2v.e003.non_ema_0725000.pth``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.attention import AttentionMixin, BasicTransformerBlock
from diffusers.models.embeddings import TimestepEmbedding
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import Downsample2D, ResnetBlock2D, TemporalConvLayer, Upsample2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel
from diffusers.utils import BaseOutput

from .conditioning import check_motion_factor_measure

# The official network builds its timestep, motion and appearance embeddings with a sinusoid whose frequencies are
# 10000 ** (-i / half), cosine half first. diffusers' `Timesteps` computes the same frequencies through exp/log,
# which differs in the last bits; at timesteps near 1000 that is ~1e-4 in the embedding, so we keep the exact form.
MAX_PERIOD = 10000


def sinusoidal_embedding(values: torch.Tensor, dim: int) -> torch.Tensor:
    """(N,) numbers -> (N, dim) embedding [cos(v * f_i), sin(v * f_i)], f_i = MAX_PERIOD ** (-i / (dim // 2))."""
    half = dim // 2
    values = values.float()
    freqs = torch.pow(MAX_PERIOD, -torch.arange(half, device=values.device, dtype=torch.float32).div(half))
    args = torch.outer(values, freqs)
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


@dataclass
class HiGenUNet3DOutput(BaseOutput):
    """`sample` (B, C, F, H, W): the network's prediction (v, on HiGen's schedule) for every frame. `deep_features`
    (B*F, C', H, W), asked for with `return_deep_features`: the input of the last decoder block, what feature caching
    reuses at the next steps (see `forward`)."""

    sample: torch.Tensor
    deep_features: torch.Tensor | None = None


class HiGenTextResampler(nn.Module):
    """Learned query tokens that cross-attend to the text encoder's states (the released model's
    `context_embedding`). The cross-attention layers then see `num_tokens` tokens instead of the 77 text states."""

    def __init__(self, text_embed_dim: int, inner_dim: int, out_dim: int, num_tokens: int, depth: int, heads: int = 8):
        super().__init__()
        self.proj_in = nn.Linear(text_embed_dim, inner_dim)
        self.query_tokens = nn.Parameter(inner_dim**-0.5 * torch.randn(1, num_tokens, inner_dim))
        # Both attention layers of each block attend to the text (no self-attention among the queries).
        self.blocks = nn.ModuleList(
            [
                BasicTransformerBlock(
                    inner_dim, heads, inner_dim // heads, cross_attention_dim=inner_dim, only_cross_attention=True
                )
                for _ in range(depth)
            ]
        )
        self.proj_out = nn.Linear(inner_dim, out_dim)

    def forward(self, text_states: torch.Tensor) -> torch.Tensor:
        text_states = self.proj_in(text_states)  # (B, L, inner)
        tokens = self.query_tokens.expand(text_states.shape[0], -1, -1)  # (B, N, inner)
        for block in self.blocks:
            tokens = block(tokens, encoder_hidden_states=text_states)
        return self.proj_out(tokens)  # (B, N, out)


class _HiGenLevel(nn.Module):
    """Shared layer order of every UNet level: ResNet -> temporal conv -> spatial attention -> temporal attention.
    Temporal layers run only when there is more than one frame: with one frame they are skipped exactly, which is
    what makes the same network an image model for spatial reasoning."""

    def __init__(self):
        super().__init__()
        self.gradient_checkpointing = False

    def _build(self, in_channels, out_channels, num_layers, temb_channels, has_attention, head_dim,
               cross_attention_dim, temporal_attention, dropout, temporal_dropout, groups, skip_channels=()):
        resnets, temp_convs, attentions, temp_attentions = [], [], [], []
        for i in range(num_layers):
            res_in = (in_channels if i == 0 else out_channels) + (skip_channels[i] if skip_channels else 0)
            resnets.append(
                ResnetBlock2D(in_channels=res_in, out_channels=out_channels, temb_channels=temb_channels,
                              eps=1e-5, groups=groups, dropout=dropout)
            )
            temp_convs.append(TemporalConvLayer(out_channels, out_channels, dropout=temporal_dropout,
                                                norm_num_groups=groups))
            if has_attention:
                heads = out_channels // head_dim
                attentions.append(
                    Transformer2DModel(heads, head_dim, in_channels=out_channels, num_layers=1,
                                       cross_attention_dim=cross_attention_dim, norm_num_groups=groups,
                                       use_linear_projection=True)
                )
                if temporal_attention:
                    temp_attentions.append(
                        TransformerTemporalModel(heads, head_dim, in_channels=out_channels, num_layers=1,
                                                 norm_num_groups=groups)
                    )
        self.resnets = nn.ModuleList(resnets)
        self.temp_convs = nn.ModuleList(temp_convs)
        self.attentions = nn.ModuleList(attentions)
        self.temp_attentions = nn.ModuleList(temp_attentions)

    def _layer(self, i, hidden_states, temb, context, num_frames):
        hidden_states = self.resnets[i](hidden_states, temb)
        if num_frames > 1:
            hidden_states = self.temp_convs[i](hidden_states, num_frames=num_frames)
        if len(self.attentions) > 0:
            hidden_states = self.attentions[i](hidden_states, encoder_hidden_states=context, return_dict=False)[0]
        if len(self.temp_attentions) > 0 and num_frames > 1:
            hidden_states = self.temp_attentions[i](hidden_states, num_frames=num_frames, return_dict=False)[0]
        return hidden_states


class HiGenDownBlock(_HiGenLevel):
    def __init__(self, in_channels, out_channels, num_layers, add_downsample, **kwargs):
        super().__init__()
        self._build(in_channels, out_channels, num_layers, **kwargs)
        self.downsamplers = nn.ModuleList(
            [Downsample2D(out_channels, use_conv=True, out_channels=out_channels, padding=1, name="op")]
            if add_downsample else []
        )

    def forward(self, hidden_states, temb, context, num_frames):
        skips = ()
        for i in range(len(self.resnets)):
            hidden_states = self._layer(i, hidden_states, temb, context, num_frames)
            skips += (hidden_states,)
        for downsampler in self.downsamplers:
            hidden_states = downsampler(hidden_states)
            skips += (hidden_states,)
        return hidden_states, skips


class HiGenMidBlock(_HiGenLevel):
    """ResNet -> temporal conv -> spatial attention -> temporal attention -> ResNet -> temporal conv."""

    def __init__(self, channels, **kwargs):
        super().__init__()
        self._build(channels, channels, 2, has_attention=False, **kwargs)
        # The middle block always has attention, one layer of each kind, between its two ResNets.
        head_dim = kwargs["head_dim"]
        self.attentions.append(
            Transformer2DModel(channels // head_dim, head_dim, in_channels=channels, num_layers=1,
                               cross_attention_dim=kwargs["cross_attention_dim"], norm_num_groups=kwargs["groups"],
                               use_linear_projection=True)
        )
        if kwargs["temporal_attention"]:
            self.temp_attentions.append(
                TransformerTemporalModel(channels // head_dim, head_dim, in_channels=channels, num_layers=1,
                                         norm_num_groups=kwargs["groups"])
            )

    def forward(self, hidden_states, temb, context, num_frames):
        hidden_states = self.resnets[0](hidden_states, temb)
        if num_frames > 1:
            hidden_states = self.temp_convs[0](hidden_states, num_frames=num_frames)
        hidden_states = self.attentions[0](hidden_states, encoder_hidden_states=context, return_dict=False)[0]
        if len(self.temp_attentions) > 0 and num_frames > 1:
            hidden_states = self.temp_attentions[0](hidden_states, num_frames=num_frames, return_dict=False)[0]
        hidden_states = self.resnets[1](hidden_states, temb)
        if num_frames > 1:
            hidden_states = self.temp_convs[1](hidden_states, num_frames=num_frames)
        return hidden_states


class HiGenUpBlock(_HiGenLevel):
    def __init__(self, in_channels, out_channels, skip_channels, add_upsample, **kwargs):
        super().__init__()
        self._build(in_channels, out_channels, len(skip_channels), skip_channels=skip_channels, **kwargs)
        self.upsamplers = nn.ModuleList(
            [Upsample2D(out_channels, use_conv=True, out_channels=out_channels)] if add_upsample else []
        )

    def forward(self, hidden_states, skips, temb, context, num_frames, upsample_size=None):
        for i in range(len(self.resnets)):
            hidden_states = torch.cat([hidden_states, skips[-1 - i]], dim=1)
            hidden_states = self._layer(i, hidden_states, temb, context, num_frames)
        for upsampler in self.upsamplers:
            hidden_states = upsampler(hidden_states, output_size=upsample_size)
        return hidden_states


class HiGenUNet3DModel(ModelMixin, ConfigMixin, AttentionMixin, PeftAdapterMixin):
    r"""
    HiGen's 3D-UNet: a ModelScope-style video UNet plus the prior stem, the motion and appearance MLPs and the text
    resampler. Defaults equal the released model.

    Args:
        in_channels / out_channels: latent channels.
        block_out_channels: channels of each level (the official `dim * dim_mult`).
        layers_per_block: ResNets per encoder level (the decoder has one more).
        attention_levels: which levels have spatial and temporal attention (the official `attn_scales`).
        attention_head_dim: channels per attention head; a level of C channels has C // attention_head_dim heads.
        stem_attention_heads: heads of the temporal attention right after the input stem (official `num_heads`).
        temporal_attention: whether the temporal attention layers exist (temporal convolutions always do).
        text_embed_dim: width of the text encoder's states (official `y_dim`).
        cross_attention_dim: width of the states the cross-attention layers see (official `context_dim`).
        use_text_resampler / resampler_tokens / resampler_depth: the text resampler (official `context_embedding`);
            without it the cross-attention layers see the text states directly.
        appearance_width: length of each frame's row of the appearance matrix (32 in the released model).
        num_frames: the number of frames the model was trained with (the pipeline's default).
        sample_size: (height, width) of the latents the model was trained with (the pipeline's default).
        motion_factor_range: the motion factors seen in training; the pipeline warns outside it.
        motion_factor_measure: how training measured γm on a clip (`conditioning.MOTION_FACTOR_MEASURES`); the
            released model's is inferred, not published (higen_core/training/README.md, "The motion factor's scale").
        dropout / temporal_dropout: dropout of the spatial ResNets and of the temporal convolutions.
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["HiGenDownBlock", "HiGenMidBlock", "HiGenUpBlock"]
    # Parameters that HiGen adds to the text-to-video UNet it starts from; everything else is the base UNet.
    higen_addition_prefixes = ("prior_conv_in.", "motion_embedding.", "appearance_embedding.", "text_resampler.")

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 4,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        attention_levels: tuple[bool, ...] = (True, True, True, False),
        attention_head_dim: int = 64,
        stem_attention_heads: int = 8,
        temporal_attention: bool = True,
        text_embed_dim: int = 1024,
        cross_attention_dim: int = 1024,
        use_text_resampler: bool = True,
        resampler_tokens: int = 16,
        resampler_depth: int = 2,
        appearance_width: int = 32,
        num_frames: int = 32,
        sample_size: tuple[int, int] = (32, 56),
        motion_factor_range: tuple[float, float] = (300.0, 600.0),
        motion_factor_measure: str = "scaled:l1",
        dropout: float = 0.1,
        temporal_dropout: float = 0.1,
        norm_num_groups: int = 32,
    ):
        super().__init__()
        if len(attention_levels) != len(block_out_channels):
            raise ValueError(
                f"attention_levels has {len(attention_levels)} entries but block_out_channels has "
                f"{len(block_out_channels)}: give one True/False per level."
            )
        check_motion_factor_measure(motion_factor_measure)
        base = block_out_channels[0]
        time_embed_dim = base * 4
        level_kwargs = dict(
            temb_channels=time_embed_dim, head_dim=attention_head_dim, cross_attention_dim=cross_attention_dim,
            temporal_attention=temporal_attention, dropout=dropout, temporal_dropout=temporal_dropout,
            groups=norm_num_groups,
        )

        # 1. Timestep, motion and appearance embeddings: (B*F, time_embed_dim) each, summed per frame.
        self.time_embedding = TimestepEmbedding(base, time_embed_dim)
        self.motion_embedding = TimestepEmbedding(base, time_embed_dim)
        self.appearance_embedding = TimestepEmbedding(appearance_width, time_embed_dim)

        # 2. Text: the resampler turns (B, 77, text_embed_dim) into (B, resampler_tokens, cross_attention_dim).
        self.text_resampler = None
        if use_text_resampler:
            self.text_resampler = HiGenTextResampler(
                text_embed_dim, time_embed_dim, cross_attention_dim, resampler_tokens, resampler_depth
            )
        elif text_embed_dim != cross_attention_dim:
            raise ValueError(
                f"Without the text resampler the cross-attention layers see the text states directly, so "
                f"text_embed_dim ({text_embed_dim}) must equal cross_attention_dim ({cross_attention_dim})."
            )

        # 3. Input stem, the prior stem (same shape, zero-initialised) and the stem's temporal attention.
        self.conv_in = nn.Conv2d(in_channels, base, kernel_size=3, padding=1)
        self.prior_conv_in = nn.Conv2d(in_channels, base, kernel_size=3, padding=1)
        self.transformer_in = None
        if temporal_attention:
            self.transformer_in = TransformerTemporalModel(
                stem_attention_heads, attention_head_dim, in_channels=base, num_layers=1, norm_num_groups=norm_num_groups
            )

        # 4. Encoder.
        self.down_blocks = nn.ModuleList()
        skip_channels = [base]
        channels = base
        for level, out_ch in enumerate(block_out_channels):
            is_last = level == len(block_out_channels) - 1
            self.down_blocks.append(
                HiGenDownBlock(channels, out_ch, layers_per_block, add_downsample=not is_last,
                               has_attention=attention_levels[level], **level_kwargs)
            )
            skip_channels += [out_ch] * (layers_per_block + (0 if is_last else 1))
            channels = out_ch

        # 5. Middle.
        self.mid_block = HiGenMidBlock(channels, **level_kwargs)

        # 6. Decoder: each level takes layers_per_block + 1 skips, deepest first.
        self.up_blocks = nn.ModuleList()
        for level, out_ch in reversed(list(enumerate(block_out_channels))):
            level_skips = [skip_channels.pop() for _ in range(layers_per_block + 1)]
            self.up_blocks.append(
                HiGenUpBlock(channels, out_ch, level_skips, add_upsample=level > 0,
                             has_attention=attention_levels[level], **level_kwargs)
            )
            channels = out_ch

        # 7. Head.
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, base, eps=1e-5)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(base, out_channels, kernel_size=3, padding=1)

        self.gradient_checkpointing = False
        self.initialize_weights()

    def initialize_weights(self):
        """The official initialisation's zeros: HiGen's additions start as no-ops (prior stem, motion and appearance
        MLPs), temporal layers start as identities, and residual branches and the head start at zero."""
        zero = [self.prior_conv_in, self.motion_embedding.linear_2, self.appearance_embedding.linear_2]
        zero += [self.conv_out.weight]
        for module in self.modules():
            if isinstance(module, TransformerTemporalModel):
                zero.append(module.proj_out)
            elif isinstance(module, TemporalConvLayer):
                zero.append(module.conv4[-1])
            elif isinstance(module, Transformer2DModel):
                zero.append(module.proj_out)
            elif isinstance(module, ResnetBlock2D):
                zero.append(module.conv2)
        with torch.no_grad():
            for item in zero:
                for p in [item] if isinstance(item, nn.Parameter) else item.parameters():
                    p.zero_()

    # ----------------------------------------------------------------------------------------------------------
    # Starting points for training: a text-to-video UNet (ModelScope) or a text-to-image UNet (SD 2.x).
    @staticmethod
    def _source_attention_head_dim(source) -> int:
        """The channels per head of the source's spatial attention, which must be the same at every level."""
        head_dims = {
            module.attn1.to_q.out_features // module.attn1.heads
            for module in source.modules() if isinstance(module, BasicTransformerBlock)
        }
        if len(head_dims) != 1:
            raise ValueError(f"The source UNet's attention heads have different widths per level ({sorted(head_dims)});"
                             f" HiGen uses one head width everywhere.")
        return head_dims.pop()

    @classmethod
    def _from_source(cls, source, allowed_missing: tuple[str, ...], **overrides) -> HiGenUNet3DModel:
        cfg = source.config
        if not (cfg.get("flip_sin_to_cos", True) and cfg.get("freq_shift", 0) == 0):
            raise ValueError("The source UNet's timestep embedding is not the cos-first sinusoid HiGen uses.")
        for name in ("class_embed_type", "addition_embed_type", "encoder_hid_dim", "time_cond_proj_dim"):
            if cfg.get(name) is not None:
                raise ValueError(f"The source UNet uses `{name}`, which HiGen has no counterpart for.")
        if cfg.get("only_cross_attention") is True or cfg.get("dual_cross_attention"):
            raise ValueError("The source UNet uses only/dual cross-attention, which HiGen has no counterpart for.")
        sample_size = cfg.get("sample_size") or 64
        config = dict(
            in_channels=cfg.in_channels, out_channels=cfg.out_channels,
            block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
            attention_levels=tuple(t.startswith("CrossAttn") for t in cfg.down_block_types),
            attention_head_dim=cls._source_attention_head_dim(source),
            text_embed_dim=cfg.cross_attention_dim, cross_attention_dim=cfg.cross_attention_dim,
            use_text_resampler=False, num_frames=16,
            sample_size=tuple(sample_size) if isinstance(sample_size, (list, tuple)) else (sample_size, sample_size),
            norm_num_groups=cfg.norm_num_groups,
        )
        if getattr(source, "transformer_in", None) is not None:
            config["stem_attention_heads"] = source.transformer_in.transformer_blocks[0].attn1.heads
        config.update(overrides)
        model = cls(**config)

        state = {}
        for key, value in source.state_dict().items():
            wanted = model.state_dict().get(key)
            # SD 1.x projects attention inputs with 1x1 convolutions; ours are linear layers of the same weights.
            if wanted is not None and value.ndim == 4 and wanted.ndim == 2:
                value = value[:, :, 0, 0]
            state[key] = value
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(cls.higen_addition_prefixes + allowed_missing)]
        if missing or unexpected:
            raise ValueError(f"The source UNet does not map onto HiGen's layout: missing {missing[:10]}, "
                             f"unexpected {unexpected[:10]}.")
        return model if source.dtype == model.dtype else model.to(dtype=source.dtype)

    @classmethod
    def from_unet3d(cls, unet3d, **overrides) -> HiGenUNet3DModel:
        """Start from diffusers' `UNet3DConditionModel` (e.g. ModelScope T2V). HiGen's additions start at zero, so
        with the text resampler off (the default here) the new model gives the source model's output."""
        return cls._from_source(unet3d, allowed_missing=(), **overrides)

    @classmethod
    def from_unet2d(cls, unet2d, **overrides) -> HiGenUNet3DModel:
        """Start from a Stable Diffusion 2.x `UNet2DConditionModel`: its layers become the spatial layers; temporal
        layers are new and start as identities, HiGen's additions at zero, so every frame gets the image model's
        output until training teaches them."""
        temporal = ("transformer_in.",) + tuple(
            f"{part}.{i}.{kind}." for part, n in (("down_blocks", len(unet2d.down_blocks)),
                                                  ("up_blocks", len(unet2d.up_blocks)))
            for i in range(n) for kind in ("temp_convs", "temp_attentions")
        ) + ("mid_block.temp_convs.", "mid_block.temp_attentions.")
        return cls._from_source(unet2d, allowed_missing=temporal, **overrides)

    def parameter_kind(self, name: str) -> str:
        """"spatial" (the text-to-image UNet's layers), "temporal" (temporal convolutions and attention) or "higen"
        (the prior stem, the motion and appearance MLPs, the text resampler). Training uses it: image batches train
        only the spatial parameters, and their gradients are scaled."""
        if name.startswith(self.higen_addition_prefixes):
            return "higen"
        if name.startswith("transformer_in.") or ".temp_convs." in name or ".temp_attentions." in name:
            return "temporal"
        return "spatial"

    # ----------------------------------------------------------------------------------------------------------
    def _frame_embeddings(self, timestep, motion_factors, appearance_matrix, batch, num_frames, dtype, device):
        """Each frame's embedding: timestep + motion + appearance, (B*F, time_embed_dim)."""
        base = self.config.block_out_channels[0]
        timestep = torch.as_tensor(timestep, device=device)
        timestep = timestep.reshape(-1).expand(batch) if timestep.numel() == 1 else timestep.reshape(batch)
        temb = self.time_embedding(sinusoidal_embedding(timestep, base).to(dtype))
        temb = temb.repeat_interleave(num_frames, dim=0)

        # Motion: rounded integers, embedded like timesteps; F-1 factors (one per pair of frames) are linearly
        # interpolated to F frames in embedding space.
        if motion_factors is None:
            motion_factors = torch.zeros(batch, num_frames, device=device)
        motion_factors = torch.as_tensor(motion_factors, device=device).reshape(batch, -1)
        count = motion_factors.shape[1]
        if count not in (num_frames, num_frames - 1) and not (num_frames == 1 and count == 1):
            raise ValueError(
                f"motion_factors has {count} values per sample for {num_frames} frames: give (B,) for one frame, "
                f"(B, F-1) or (B, F) for a video."
            )
        motion = sinusoidal_embedding(motion_factors.round().reshape(-1), base).view(batch, count, base)
        if count != num_frames:
            motion = F.interpolate(motion.transpose(1, 2), size=num_frames, mode="linear").transpose(1, 2)
        temb = temb + self.motion_embedding(motion.to(dtype)).flatten(0, 1)

        # Appearance: each frame's row of similarities to every frame.
        width = self.config.appearance_width
        if appearance_matrix is None:
            appearance_matrix = torch.ones(batch, num_frames, width, device=device)
        if tuple(appearance_matrix.shape) != (batch, num_frames, width):
            raise ValueError(
                f"appearance_matrix has shape {tuple(appearance_matrix.shape)}; expected {(batch, num_frames, width)} "
                f"(batch, frames, the model's appearance width). Build it with higen_core.appearance_matrix."
            )
        return temb + self.appearance_embedding(appearance_matrix.to(device=device, dtype=dtype)).flatten(0, 1)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        spatial_prior: torch.Tensor | None = None,
        motion_factors: torch.Tensor | None = None,
        appearance_matrix: torch.Tensor | None = None,
        deep_features: torch.Tensor | None = None,
        return_deep_features: bool = False,
        return_dict: bool = True,
    ) -> HiGenUNet3DOutput | tuple:
        r"""
        Args:
            sample: (B, C, F, H, W) noisy latents; F = 1 is spatial reasoning (temporal layers skipped).
            timestep: a number or (B,) diffusion timesteps.
            encoder_hidden_states: (B, L, text_embed_dim) text states.
            spatial_prior: (B, C, H, W) latent image, or None for zeros (spatial reasoning has no prior).
            motion_factors: (B,) for one frame, (B, F-1) or (B, F) for a video; None means 0.
            appearance_matrix: (B, F, appearance_width) rows of frame similarities; None means all ones.
            deep_features: feature caching across denoising steps (DeepCache, Ma et al. 2024): the `deep_features` of
                an earlier call with the same shapes. Only the outermost level runs (stem, first encoder block, last
                decoder block); every deeper layer's output is taken from the cache. Neighbouring steps change those
                slowly-varying features little, so this trades a small change of the result for the deeper layers' cost.
            return_deep_features: also return the input of the last decoder block, for later calls' `deep_features`.
        Returns:
            `HiGenUNet3DOutput` whose `sample` has the shape of the input `sample`; with `return_dict=False` the tuple
            (sample,) or, with `return_deep_features`, (sample, deep_features).
        """
        if sample.ndim != 5:
            raise ValueError(f"sample must be (B, C, F, H, W); got shape {tuple(sample.shape)}.")
        batch, channels, num_frames, height, width = sample.shape
        dtype = self.conv_in.weight.dtype
        if spatial_prior is None:
            spatial_prior = torch.zeros(batch, channels, height, width, device=sample.device, dtype=dtype)
        elif tuple(spatial_prior.shape) != (batch, channels, height, width):
            raise ValueError(
                f"spatial_prior has shape {tuple(spatial_prior.shape)}; expected {(batch, channels, height, width)}."
            )

        # 1. Per-frame condition embedding (B*F, E) and text context (B*F, tokens, cross_attention_dim).
        temb = self._frame_embeddings(timestep, motion_factors, appearance_matrix, batch, num_frames, dtype,
                                      sample.device)
        context = encoder_hidden_states.to(dtype)
        if self.text_resampler is not None:
            context = self.text_resampler(context)
        context = context.repeat_interleave(num_frames, dim=0)

        # 2. Stem: frames become batch entries (B*F, C, H, W); the prior is added to every frame after the stem.
        hidden = sample.permute(0, 2, 1, 3, 4).reshape(batch * num_frames, channels, height, width).to(dtype)
        hidden = self.conv_in(hidden) + self.prior_conv_in(spatial_prior.to(dtype)).repeat_interleave(num_frames, 0)
        if self.transformer_in is not None and num_frames > 1:
            hidden = self.transformer_in(hidden, num_frames=num_frames, return_dict=False)[0]
        skips = (hidden,)

        # 3. Encoder, middle, decoder. With cached deep features only the outermost level runs: the first encoder
        #    block's skips (without its downsampled output, which feeds the deeper levels) and the cache feed the last
        #    decoder block.
        checkpointing = torch.is_grad_enabled() and self.gradient_checkpointing
        cached = deep_features is not None
        for block in self.down_blocks[:1] if cached else self.down_blocks:
            if checkpointing:
                hidden, block_skips = self._gradient_checkpointing_func(block, hidden, temb, context, num_frames)
            else:
                hidden, block_skips = block(hidden, temb, context, num_frames)
            skips += block_skips
        if cached:
            skips = skips[: len(self.up_blocks[-1].resnets)]
            expected = (batch * num_frames, self.up_blocks[-1].resnets[0].in_channels - skips[-1].shape[1],
                        *skips[-1].shape[2:])
            if tuple(deep_features.shape) != expected:
                raise ValueError(f"deep_features has shape {tuple(deep_features.shape)}; expected {expected}: pass "
                                 f"the deep_features of a call with the same batch, frame count and size.")
            hidden = deep_features.to(dtype)
        elif checkpointing:
            hidden = self._gradient_checkpointing_func(self.mid_block, hidden, temb, context, num_frames)
        else:
            hidden = self.mid_block(hidden, temb, context, num_frames)
        for block in self.up_blocks[-1:] if cached else self.up_blocks:
            if block is self.up_blocks[-1]:
                deep_features = hidden
            block_skips, skips = skips[-len(block.resnets):], skips[: -len(block.resnets)]
            upsample_size = skips[-1].shape[2:] if skips and len(block.upsamplers) > 0 else None
            if checkpointing:
                hidden = self._gradient_checkpointing_func(
                    block, hidden, block_skips, temb, context, num_frames, upsample_size
                )
            else:
                hidden = block(hidden, block_skips, temb, context, num_frames, upsample_size)

        # 4. Head, and frames back to (B, C, F, H, W).
        hidden = self.conv_out(self.conv_act(self.conv_norm_out(hidden)))
        out = hidden.reshape(batch, num_frames, -1, height, width).permute(0, 2, 1, 3, 4)
        deep_features = deep_features if return_deep_features else None
        if not return_dict:
            return (out,) if deep_features is None else (out, deep_features)
        return HiGenUNet3DOutput(sample=out, deep_features=deep_features)
