"""Time-conditioned U-Net score network for images (DDPM++ / NCSN++ family, small).

``UNet(x (B, C, H, W), t (B,), cond) -> (B, C, H, W)``; wrap it in
:class:`molscore.models.param.ScoreModel` to get a score.

Architecture: a 3x3 stem, then for each resolution level ``num_res_blocks``
residual blocks (GroupNorm -> SiLU -> conv, twice; the noise-level embedding is
projected and added inside every block), a stride-2 downsampling conv between
levels, self-attention at the lowest resolution (middle), and a mirrored decoder
whose blocks take the concatenated skip activations; nearest-neighbour
upsampling followed by a conv. The output conv is zero-initialised so a fresh
network predicts 0.

Conditioning: ``cond`` is ``None`` or class labels ``(B,)`` long. With
``num_classes = K`` the label embedding has ``K + 1`` rows; row ``K`` is the
*null* label used for unconditional scores (classifier-free guidance). Labels
``< 0`` and ``cond=None`` both mean null; a label ``>= K`` (a class the model was
not trained with) raises ``ValueError``. In training mode each label is replaced
by the null label with probability ``label_dropout``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["UNet", "timestep_embedding"]


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding of ``1000 t`` (``t`` in ``[0, 1]``): ``(B,) -> (B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device,
                                                           dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _groups(channels: int) -> int:
    """Largest group count <= 8 dividing ``channels``."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class ResBlock(nn.Module):
    """Residual block: ``(B, c_in, H, W), emb (B, E) -> (B, c_out, H, W)``."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.skip(x) + h) / math.sqrt(2.0)


class AttnBlock(nn.Module):
    """Multi-head self-attention over pixels: ``(B, c, H, W) -> (B, c, H, W)``."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        heads = heads if channels % heads == 0 else 1
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q = self.norm(x).reshape(b, c, h * w).transpose(1, 2)
        out, _ = self.attn(q, q, q, need_weights=False)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class UNet(nn.Module):
    """Noise-conditional U-Net ``net(x (B, C, H, W), t (B,), cond) -> (B, C, H, W)``.

    Args:
        in_channels: image channels ``C``.
        channels: base width; level ``i`` has ``channels * ch_mult[i]`` channels.
        ch_mult: width multipliers, one per resolution level; ``H`` and ``W`` must be
            divisible by ``2 ** (len(ch_mult) - 1)``.
        num_res_blocks: residual blocks per level in the encoder (decoder has one more).
        attn_heads: heads of the self-attention at the lowest resolution.
        dropout: dropout inside residual blocks.
        num_classes: number of class labels (``None``: unconditional; ``cond`` ignored).
        label_dropout: probability, in training mode, of replacing a label by null.
    """

    def __init__(self, in_channels: int = 1, channels: int = 32, ch_mult: Sequence[int] = (1, 2),
                 num_res_blocks: int = 1, attn_heads: int = 4, dropout: float = 0.0,
                 num_classes: int | None = None, label_dropout: float = 0.1):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.label_dropout = label_dropout
        self.factor = 2 ** (len(ch_mult) - 1)
        emb_dim = 4 * channels
        self.base = channels
        self.time_mlp = nn.Sequential(nn.Linear(channels, emb_dim), nn.SiLU(),
                                      nn.Linear(emb_dim, emb_dim))
        self.label_emb = (nn.Embedding(num_classes + 1, emb_dim)
                          if num_classes is not None else None)
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1)

        self.down = nn.ModuleList()
        skip_ch = [channels]
        ch = channels
        for level, mult in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                self.down.append(ResBlock(ch, channels * mult, emb_dim, dropout))
                ch = channels * mult
                skip_ch.append(ch)
            if level < len(ch_mult) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skip_ch.append(ch)

        self.mid1 = ResBlock(ch, ch, emb_dim, dropout)
        self.mid_attn = AttnBlock(ch, attn_heads)
        self.mid2 = ResBlock(ch, ch, emb_dim, dropout)

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks + 1):
                self.up.append(ResBlock(ch + skip_ch.pop(), channels * mult, emb_dim, dropout))
                ch = channels * mult
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(ch, ch, 3, padding=1)))
        self.out_norm = nn.GroupNorm(_groups(ch), ch)
        self.out = nn.Conv2d(ch, in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _labels(self, cond: Tensor | None, batch: int, device: torch.device) -> Tensor:
        """Label indices ``(B,)`` with null = ``num_classes`` (and label dropout in training).

        Raises:
            ValueError: a label ``>= num_classes``, or one that is no whole number.
        """
        null = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        if cond is None:
            return null
        y = torch.as_tensor(cond, device=device)
        if y.is_floating_point() and not torch.equal(y, y.round()):   # 2.7 was taken as class 2
            raise ValueError("class labels must be whole numbers (a negative label means no label)")
        y = y.long().reshape(-1).expand(batch)
        if y.numel() and int(y.max()) >= self.num_classes:
            raise ValueError(f"class label {int(y.max())} is not one of this model's classes "
                             f"0..{self.num_classes - 1} (a negative label means no label)")
        y = torch.where(y < 0, null, y)
        if self.training and self.label_dropout > 0:
            drop = torch.rand(batch, device=device) < self.label_dropout
            y = torch.where(drop, null, y)
        return y

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected images (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[2] % self.factor or x.shape[3] % self.factor:
            raise ValueError(f"image size {tuple(x.shape[2:])} must be divisible by {self.factor}")
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        emb = self.time_mlp(timestep_embedding(t, self.base).to(x.dtype))
        if self.label_emb is not None:
            emb = emb + self.label_emb(self._labels(cond, x.shape[0], x.device))
        h = self.stem(x)
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1), emb)
            else:
                h = layer(h)
        return self.out(F.silu(self.out_norm(h)))
