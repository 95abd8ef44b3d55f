"""Fake-quantized replacements of the TinyViT encoder's layers, with calibration recording.

- :class:`QuantConv`: convolution with BatchNorm folded in; per-output-channel weight scales (conv,
  depthwise conv), one input scale; twin-uniform when the input is post-GELU.
- :class:`QuantLinear`: per-layer weight scale, one input scale; twin-uniform when the input is post-GELU.
- :class:`QuantAttention`: TinyViT window attention with head-wise scales on q, k and v and a
  twin-uniform post-softmax quantizer.

Each layer has three modes: ``enabled`` False (float, optionally recording calibration rows), enabled
(fake-quant with the searched scales: the evaluation model), and ``deploy`` (only per-tensor /
per-channel int8 QDQ operations, so ``torch.onnx.export`` writes a QDQ graph; see export.py).

While a :class:`Recorder` is attached, a layer keeps a random sample of its input rows (conv patches,
linear tokens, attention windows) and registers a hook that keeps the task-loss gradient of its output
at the same positions: the search's Hessian-guided distance is sum(g^2 * (O_quant - O)^2).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from tinysam_annotate.modeling.tiny_vit import Conv2dBN, WindowAttention, attend_in_windows

from .quantizers import GELU_MIN, qmax, twin_gelu, twin_softmax, uniform


class Recorder:
    """Random row sampling shared by all layers of one calibration pass."""

    def __init__(self, rows: int, windows: int, seed: int = 0) -> None:
        self.rows, self.windows = rows, windows
        self.generator = torch.Generator().manual_seed(seed)

    def pick(self, total: int, count: int) -> torch.Tensor:
        return torch.randperm(total, generator=self.generator)[: min(count, total)]


def _keep_grad(store: list, index) -> callable:
    def hook(grad: torch.Tensor) -> None:
        store.append(index(grad).detach().float())

    return hook


class _Quantized(nn.Module):
    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.enabled = False
        self.deploy = False
        self.recorder: Recorder | None = None
        self.inputs: list[torch.Tensor] = []
        self.grads: list[torch.Tensor] = []
        self.act_kind = "uniform"  # or "gelu" (twin-uniform), decided from the calibration inputs
        self.register_buffer("a_scale", torch.tensor(1.0))

    def clear(self) -> None:
        self.inputs, self.grads = [], []

    def quant_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return torch.fake_quantize_per_tensor_affine(x, float(self.a_scale), 0, -128, 127)
        if not self.enabled:
            return x
        if self.act_kind == "gelu":
            return twin_gelu(x, self.a_scale, self.bits)
        return uniform(x, self.a_scale, self.bits)


class QuantConv(_Quantized):
    """A Conv2d (BatchNorm folded) with per-output-channel weight scales and a per-layer input scale."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, conv: nn.Conv2d, bits: int) -> None:
        super().__init__(bits)
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None
        self.stride, self.padding, self.groups = conv.stride, conv.padding, conv.groups
        self.register_buffer("w_scale", torch.ones(weight.shape[0]))

    @classmethod
    def from_conv_bn(cls, module: Conv2dBN, bits: int) -> "QuantConv":
        conv, bn = module.c, module.bn
        std = torch.sqrt(bn.running_var + bn.eps)
        weight = conv.weight * (bn.weight / std).reshape(-1, 1, 1, 1)
        bias = bn.bias - bn.running_mean * bn.weight / std
        return cls(weight, bias, conv, bits)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, bits: int) -> "QuantConv":
        return cls(conv.weight, conv.bias, conv, bits)

    def quant_weight(self) -> torch.Tensor:
        if self.deploy:
            zero = torch.zeros(self.weight.shape[0], dtype=torch.int32)
            return torch.fake_quantize_per_channel_affine(self.weight, self.w_scale, zero, 0, -128, 127)
        if not self.enabled:
            return self.weight
        return uniform(self.weight, self.w_scale.reshape(-1, 1, 1, 1), self.bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(self.quant_input(x), self.quant_weight(), self.bias, self.stride, self.padding, 1, self.groups)
        if self.recorder is not None and torch.is_grad_enabled():
            self._record(x, out)
        return out

    def _record(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """Keep n x G x (Cin/G * k * k) input patches and the n x Cout output gradients at random positions."""
        b, _, oh, ow = out.shape
        flat = self.recorder.pick(b * oh * ow, self.recorder.rows)
        bi, rest = flat // (oh * ow), flat % (oh * ow)
        oy, ox = rest // ow, rest % ow
        kh, kw = self.weight.shape[-2:]
        padded = F.pad(x.detach(), (self.padding[1], self.padding[1], self.padding[0], self.padding[0]))
        patches = torch.stack(
            [padded[bi, :, oy * self.stride[0] + dy, ox * self.stride[1] + dx] for dy in range(kh) for dx in range(kw)], dim=2
        )  # n x Cin x k*k
        self.inputs.append(patches.reshape(len(flat), self.groups, -1).float())
        out.register_hook(_keep_grad(self.grads, lambda g: g[bi, :, oy, ox]))

    def grouped_weight(self) -> torch.Tensor:
        """G x Cout/G x (Cin/G * k * k), matching the recorded patches."""
        return self.weight.detach().reshape(self.groups, self.weight.shape[0] // self.groups, -1)


class QuantLinear(_Quantized):
    """A Linear layer with one weight scale and one input scale (per-layer, as the paper does for linear)."""

    def __init__(self, linear: nn.Linear, bits: int) -> None:
        super().__init__(bits)
        self.weight = nn.Parameter(linear.weight.detach().clone())
        self.bias = nn.Parameter(linear.bias.detach().clone()) if linear.bias is not None else None
        self.register_buffer("w_scale", torch.tensor(1.0))

    def quant_weight(self) -> torch.Tensor:
        if self.deploy:
            return torch.fake_quantize_per_tensor_affine(self.weight, float(self.w_scale), 0, -128, 127)
        return uniform(self.weight, self.w_scale, self.bits) if self.enabled else self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(self.quant_input(x), self.quant_weight(), self.bias)
        if self.recorder is not None and torch.is_grad_enabled():
            rows = self.recorder.pick(x.shape[:-1].numel(), self.recorder.rows)
            self.inputs.append(x.detach().reshape(-1, x.shape[-1])[rows][:, None, :].float())
            out.register_hook(_keep_grad(self.grads, lambda g: g.reshape(-1, g.shape[-1])[rows]))
        return out

    def grouped_weight(self) -> torch.Tensor:
        return self.weight.detach()[None]


class QuantAttention(nn.Module):
    """TinyViT window attention with head-wise q/k/v scales and a twin-uniform softmax output."""

    def __init__(self, attn: WindowAttention, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.num_heads, self.key_dim, self.scale = attn.num_heads, attn.key_dim, attn.scale
        self.window_size = attn.window_size
        self.norm = attn.norm
        self.qkv = QuantLinear(attn.qkv, bits)
        self.proj = QuantLinear(attn.proj, bits)
        self.attention_biases = attn.attention_biases
        self.register_buffer("attention_bias_idxs", attn.attention_bias_idxs, persistent=False)
        heads = attn.num_heads
        for name in ("q_scale", "k_scale", "v_scale"):
            self.register_buffer(name, torch.ones(heads))
        self.register_buffer("a_small", torch.tensor(1.0 / 2 ** (bits - 1) / 16))
        self.enabled = False
        self.deploy = False
        self.recorder: Recorder | None = None
        self.records: list[dict[str, torch.Tensor]] = []

    def clear(self) -> None:
        self.records = []

    def attend_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """B x H x W x C maps through the windows (TinyViTBlock's interface)."""
        return attend_in_windows(self, tokens, self.window_size)

    def _headwise(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        if self.deploy:  # QDQ has one scale per activation tensor: the largest head's
            return torch.fake_quantize_per_tensor_affine(x, float(scale.max()), 0, -128, 127)
        return uniform(x, scale.reshape(1, -1, 1, 1), self.bits) if self.enabled else x

    def _softmax_out(self, a: torch.Tensor) -> torch.Tensor:
        if self.deploy:  # twin-uniform is not expressible in QDQ: one uniform grid over [0, 1]
            return torch.fake_quantize_per_tensor_affine(a, 1.0 / 127, 0, -128, 127)
        return twin_softmax(a, self.a_small, self.bits) if self.enabled else a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.key_dim)
        q, k, v = (t.permute(0, 2, 1, 3) for t in qkv.split(self.key_dim, dim=3))
        bias = self.attention_biases[:, self.attention_bias_idxs]
        scores = (self._headwise(q, self.q_scale) @ self._headwise(k, self.k_scale).transpose(-2, -1)) * self.scale + bias
        attn = scores.softmax(dim=-1)
        out = self._softmax_out(attn) @ self._headwise(v, self.v_scale)
        if self.recorder is not None and torch.is_grad_enabled():
            self._record(q, k, v, attn, scores, out)
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))

    def _record(self, q, k, v, attn, scores, out) -> None:
        windows = self.recorder.pick(q.shape[0], self.recorder.windows)
        record = {"q": q[windows].detach().float(), "k": k[windows].detach().float(), "v": v[windows].detach().float(),
                  "a": attn[windows].detach().float()}
        grads: list = []
        scores.register_hook(_keep_grad(grads, lambda g: g[windows]))
        out.register_hook(_keep_grad(grads, lambda g: g[windows]))
        record["grads"] = grads  # filled by backward: [d out, d scores] (reverse order of the forward)
        self.records.append(record)


def quantize_encoder(encoder: nn.Module, bits: int) -> nn.Module:
    """A copy of a TinyViT encoder with every conv, linear and attention replaced by its fake-quant layer."""
    encoder = copy.deepcopy(encoder).float().eval()
    _replace(encoder, bits)
    return encoder


def _replace(module: nn.Module, bits: int) -> None:
    for name, child in module.named_children():
        if isinstance(child, Conv2dBN):
            setattr(module, name, QuantConv.from_conv_bn(child, bits))
        elif isinstance(child, WindowAttention):
            setattr(module, name, QuantAttention(child, bits))
        elif isinstance(child, nn.Conv2d):
            setattr(module, name, QuantConv.from_conv(child, bits))
        elif isinstance(child, nn.Linear) and name != "head":  # the classification head is never run
            setattr(module, name, QuantLinear(child, bits))
        else:
            _replace(child, bits)


def quant_layers(encoder: nn.Module) -> list[nn.Module]:
    """Every fake-quant layer (QuantConv, QuantLinear, QuantAttention) in forward-definition order."""
    return [m for m in encoder.modules() if isinstance(m, (QuantConv, QuantLinear, QuantAttention))]


def set_mode(encoder: nn.Module, enabled: bool = False, deploy: bool = False, recorder: Recorder | None = None) -> None:
    for layer in quant_layers(encoder):
        layer.enabled, layer.deploy, layer.recorder = enabled, deploy, recorder


def is_post_gelu(x: torch.Tensor) -> bool:
    """Inputs produced by GELU: never below GELU's minimum, and some negative values."""
    low = float(x.min())
    return GELU_MIN <= low < 0


__all__ = ["QuantAttention", "QuantConv", "QuantLinear", "Recorder", "is_post_gelu", "qmax", "quant_layers",
           "quantize_encoder", "set_mode"]
