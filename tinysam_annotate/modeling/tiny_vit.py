"""TinyViT image encoder as used by TinySAM and MobileSAM (state_dict keys of the official checkpoints).

Unlike the original, nothing here hard-codes the 64x64 output grid: every stage reads its spatial size
from the tensor it receives, so the encoder runs at any input resolution that is a multiple of 32
(the official configuration is 1024 -> 64x64 embeddings).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d, make_neck


@dataclass(frozen=True)
class TinyViTConfig:
    """Architecture of a TinyViT encoder. Defaults are TinyViT-5M as used by TinySAM at 1024 px."""

    img_size: int = 1024
    in_chans: int = 3
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    out_chans: int = 256
    # TinySAM/MobileSAM keep the last stage at the third stage's resolution (64x64 for 1024 input).
    keep_last_resolution: bool = True
    num_classes: int = 1000  # the unused classification head stays for checkpoint compatibility


class Conv2dBN(nn.Sequential):
    """Bias-free convolution followed by BatchNorm (keys ``c`` and ``bn``)."""

    def __init__(self, in_ch: int, out_ch: int, ks: int = 1, stride: int = 1, pad: int = 0, groups: int = 1) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(in_ch, out_ch, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_ch))


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 convolutions: B x 3 x H x W -> B x C x H/4 x W/4."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            Conv2dBN(in_chans, embed_dim // 2, 3, 2, 1),
            nn.GELU(),
            Conv2dBN(embed_dim // 2, embed_dim, 3, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block (1x1 expand, 3x3 depthwise, 1x1 project) on B x C x H x W."""

    def __init__(self, chans: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(chans * expand_ratio)
        self.conv1 = Conv2dBN(chans, hidden, ks=1)
        self.conv2 = Conv2dBN(hidden, hidden, ks=3, stride=1, pad=1, groups=hidden)
        self.conv3 = Conv2dBN(hidden, chans, ks=1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv1(x))
        y = self.act(self.conv2(y))
        return self.act(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """Downsampling between stages: B x C x H x W -> B x C' x H/s x W/s (s = 1 or 2)."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = Conv2dBN(dim, out_dim, 1, 1, 0)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim, 1, 1, 0)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return self.conv3(x)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window with a learned bias per (|dy|, |dx|) offset.

    ``forward``: (num_windows * B) x (window * window) x C windows, as in the official code.
    ``attend_map``: B x H x W x C maps, the same result with fewer memory copies (used by TinyViTBlock).
    """

    def __init__(self, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.key_dim = dim // num_heads
        self.scale = self.key_dim**-0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

        points = list(itertools.product(range(window_size), range(window_size)))
        offsets: dict[tuple[int, int], int] = {}
        idxs = []
        for p1 in points:
            for p2 in points:
                offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                idxs.append(offsets.setdefault(offset, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        n = len(points)
        self.register_buffer("attention_bias_idxs", torch.tensor(idxs, dtype=torch.long).view(n, n), persistent=False)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q, k, v: windows x heads x n x key_dim -> windows x heads x n x key_dim."""
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.attention_biases[:, self.attention_bias_idxs]
        return attn.softmax(dim=-1) @ v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        # The qkv rows are ordered (head, q|k|v, key_dim).
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3, self.key_dim)
        q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)
        return self.proj(self._attend(q, k, v).transpose(1, 2).reshape(b, n, -1))

    def attend_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """B x H x W x C -> B x H x W x C: attention in zero-padded windows, then cropped, as ``forward`` on
        :func:`window_partition` windows followed by :func:`window_unpartition`.

        LayerNorm, qkv and proj act on each token alone, so they run on the whole map, and one transpose
        does the window partition and the split into q, k, v heads (another one undoes it). In ONNX
        Runtime this halves the copies of the attention block; proj runs on the cropped map.
        """
        b, h, w, c = tokens.shape
        ws, heads = self.window_size, self.num_heads
        padded, (hp, wp) = _pad_to_windows(tokens, ws)
        rows, cols = hp // ws, wp // ws
        qkv = self.qkv(self.norm(padded)).view(b, rows, ws, cols, ws, heads, 3, self.key_dim)
        qkv = qkv.permute(6, 0, 1, 3, 5, 2, 4, 7).reshape(3, b * rows * cols, heads, ws * ws, self.key_dim)
        q, k, v = qkv.unbind(0)
        out = self._attend(q, k, v).view(b, rows, cols, heads, ws, ws, self.key_dim)
        out = out.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, hp, wp, c)
        if (hp, wp) != (h, w):
            out = out[:, :h, :w]
        return self.proj(out)


def attend_in_windows(attention: nn.Module, tokens: torch.Tensor, window_size: int) -> torch.Tensor:
    """B x H x W x C -> B x H x W x C through any module taking (num_windows * B) x (ws * ws) x C windows."""
    b, h, w, c = tokens.shape
    windows, padded_hw = window_partition(tokens, window_size)
    attended = attention(windows.view(-1, window_size * window_size, c)).view(-1, window_size, window_size, c)
    return window_unpartition(attended, window_size, padded_hw, (h, w))


class Mlp(nn.Module):
    """LayerNorm, fc1, GELU, fc2 (keys ``norm``, ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


def _pad_to_windows(x: torch.Tensor, ws: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad B x H x W x C at the bottom and right to multiples of ws; returns it and (Hp, Wp)."""
    h, w = x.shape[1:3]
    pad_h, pad_w = (ws - h % ws) % ws, (ws - w % ws) % ws
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    return x, (h + pad_h, w + pad_w)


def window_partition(x: torch.Tensor, ws: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """B x H x W x C -> (B * nWin) x ws x ws x C, zero-padding H and W up to multiples of ws."""
    b, _, _, c = x.shape
    x, (hp, wp) = _pad_to_windows(x, ws)
    x = x.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws, ws, c), (hp, wp)


def window_unpartition(windows: torch.Tensor, ws: int, padded_hw: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nWin) x ws x ws x C -> B x H x W x C."""
    hp, wp = padded_hw
    h, w = hw
    b = windows.shape[0] // ((hp // ws) * (wp // ws))
    x = windows.view(b, hp // ws, wp // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :h, :w, :].contiguous() if (hp, wp) != (h, w) else x


class TinyViTBlock(nn.Module):
    """Window attention, depthwise local conv and MLP on a B x C x H x W feature map."""

    def __init__(self, dim: int, num_heads: int, window_size: int, mlp_ratio: float, local_conv_size: int) -> None:
        super().__init__()
        self.attn = WindowAttention(dim, num_heads, window_size)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(dim, dim, ks=local_conv_size, stride=1, pad=local_conv_size // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.permute(0, 2, 3, 1)  # B x H x W x C
        tokens = tokens + self.attn.attend_map(tokens)
        x = self.local_conv(tokens.permute(0, 3, 1, 2))
        tokens = x.permute(0, 2, 3, 1)
        tokens = tokens + self.mlp(tokens)
        return tokens.permute(0, 3, 1, 2)


class TinyViTStage(nn.Module):
    """A stage of blocks (MBConv for the first stage, TinyViT blocks after) and an optional downsample."""

    def __init__(self, blocks: list[nn.Module], downsample: nn.Module | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    """TinyViT image encoder: B x 3 x S x S (normalised, padded) -> B x 256 x S/16 x S/16."""

    def __init__(self, config: TinyViTConfig = TinyViTConfig()) -> None:
        super().__init__()
        self.config = config
        self.img_size = config.img_size
        dims = config.embed_dims
        self.patch_embed = PatchEmbed(config.in_chans, dims[0])
        stages = []
        last = len(dims) - 1
        for i, depth in enumerate(config.depths):
            if i == 0:
                blocks: list[nn.Module] = [MBConv(dims[0], config.mbconv_expand_ratio) for _ in range(depth)]
            else:
                blocks = [
                    TinyViTBlock(dims[i], config.num_heads[i], config.window_sizes[i], config.mlp_ratio, config.local_conv_size)
                    for _ in range(depth)
                ]
            downsample = None
            if i < last:
                stride = 1 if (config.keep_last_resolution and i + 1 == last) else 2
                downsample = PatchMerging(dims[i], dims[i + 1], stride)
            stages.append(TinyViTStage(blocks, downsample))
        self.layers = nn.ModuleList(stages)
        self.norm_head = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], config.num_classes)
        self.neck = make_neck(dims[-1], config.out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for stage in self.layers:
            x = stage(x)
        return self.neck(x)


__all__ = ["TinyViT", "TinyViTConfig", "LayerNorm2d"]
