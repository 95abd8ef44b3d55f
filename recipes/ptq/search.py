"""TinySAM's post-training quantization: calibration statistics, the task loss, and the scale search.

For every layer, scales are searched on a grid of ``n`` candidates in [0.01, 1.2] * max / 2^(b-1),
alternating weight and activation scales for ``rounds`` rounds (3 in the paper), minimising the
Hessian-guided distance sum(g^2 * (O_quant - O)^2), where g is the gradient of the task loss with
respect to the layer output O. The task loss compares the quantized model's masks and IoU predictions
with the float model's: KL(masks) + KL(IoUs). At the float model that KL has zero gradient, so g comes
from its Fisher form (the standard approximation, as in PTQ4ViT): the loss against the float model's
own decisions, BCE(mask logits, float mask) + CE(IoU logits, float best output).
Layers are calibrated on float inputs, independently of each other (as PTQ4ViT does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from tinysam_annotate.modeling import Sam

from .layers import QuantAttention, QuantConv, QuantLinear, Recorder, is_post_gelu, quant_layers, set_mode
from .quantizers import N_CANDIDATES, candidates, max_scale, qmax, twin_gelu, twin_softmax, uniform


@dataclass
class PtqConfig:
    bits: int = 8
    rounds: int = 3
    n_candidates: int = N_CANDIDATES
    rows_per_image: int = 512  # sampled conv/linear output positions per layer and image
    windows_per_image: int = 16  # sampled attention windows per layer and image
    prompt_grid: int = 8  # calibration prompts: a prompt_grid x prompt_grid grid of single points
    seed: int = 0


def grid_prompts(size: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """size^2 single-point prompts on a regular grid of the model's input frame: (K x 1 x 2 (x, y), K x 1)."""
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) * image_size / size
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=1)[:, None, :], torch.ones(size * size, 1, dtype=torch.long)


def decode_all(sam: Sam, embedding: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float decoder on a 1 x C x g x g embedding: multimask logits K x 3 x h x w and IoU predictions K x 3."""
    pe = sam.prompt_encoder
    points, pad_labels = torch.cat([coords, torch.zeros_like(coords[:, :1])], 1), torch.cat([labels, -torch.ones_like(labels[:, :1])], 1)
    sparse = pe.embed_labeled_points(points, pad_labels)
    logits, iou, _ = sam.mask_decoder.predict_masks(embedding, pe.get_dense_pe(), sparse, pe.no_mask_dense(len(coords)))
    return logits[:, 1:], iou[:, 1:]


def fisher_loss(logits: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
    """The task loss against the model's own decisions (its gradient gives the Fisher / Hessian weights)."""
    masks = F.binary_cross_entropy_with_logits(logits, (logits.detach() > 0).float())
    ious = F.cross_entropy(iou, iou.detach().argmax(dim=1))
    return masks + ious


def task_loss(logits_q: torch.Tensor, iou_q: torch.Tensor, logits_fp: torch.Tensor, iou_fp: torch.Tensor) -> torch.Tensor:
    """KL(masks) + KL(IoUs) of the quantized outputs from the float ones (masks as per-pixel Bernoulli)."""
    p, q = torch.sigmoid(logits_fp), torch.sigmoid(logits_q)
    eps = 1e-6
    kl_masks = (p * (torch.log(p + eps) - torch.log(q + eps)) + (1 - p) * (torch.log(1 - p + eps) - torch.log(1 - q + eps))).mean()
    kl_iou = F.kl_div(F.log_softmax(iou_q, dim=1), F.log_softmax(iou_fp, dim=1), log_target=True, reduction="batchmean")
    return kl_masks + kl_iou


def collect(sam: Sam, qencoder: torch.nn.Module, images: Iterable[torch.Tensor], cfg: PtqConfig, progress: bool = True) -> None:
    """Record every layer's input rows and task-loss gradients on the calibration images (1 x 3 x S x S each)."""
    recorder = Recorder(cfg.rows_per_image, cfg.windows_per_image, cfg.seed)
    set_mode(qencoder, enabled=False, recorder=recorder)
    coords, labels = grid_prompts(cfg.prompt_grid, sam.img_size)
    for image in tqdm(list(images), desc="PTQ statistics", disable=not progress):
        qencoder.zero_grad(set_to_none=True)
        with torch.enable_grad():
            embedding = qencoder(image)
            logits, iou = decode_all(sam, embedding, coords, labels)
            fisher_loss(logits, iou).backward()
    set_mode(qencoder, enabled=False, recorder=None)


def _hessian(grads: list[torch.Tensor]) -> torch.Tensor:
    g2 = torch.cat(grads).square()
    return g2 / g2.mean().clamp(min=1e-30)


def _quant_act(x: torch.Tensor, scale: torch.Tensor, kind: str, bits: int) -> torch.Tensor:
    return twin_gelu(x, scale, bits) if kind == "gelu" else uniform(x, scale, bits)


def search_weighted(layer: QuantConv | QuantLinear, cfg: PtqConfig, use_max: bool = False) -> None:
    """Alternating search of the weight scale(s) and the input scale of a conv or linear layer."""
    x = torch.cat(layer.inputs)  # n x G x I
    h = _hessian(layer.grads)  # n x Cout
    w = layer.grouped_weight()  # G x O x I
    out = torch.einsum("ngi,goi->ngo", x, w).reshape(len(x), -1)
    per_channel = isinstance(layer, QuantConv)
    layer.act_kind = "gelu" if is_post_gelu(x) else "uniform"
    a_max = x.max() if layer.act_kind == "gelu" else x.abs().max()
    w_max = w.abs().amax(dim=2).reshape(-1) if per_channel else w.abs().max()
    levels = 2 ** (cfg.bits - 1) - (1 if layer.act_kind == "gelu" else 0)
    a_scale = a_max.clamp(min=1e-8) / max(levels, 1) if layer.act_kind == "gelu" else max_scale(a_max, cfg.bits)
    w_scale = max_scale(w_max, cfg.bits)
    if not use_max:
        w_cands = candidates(w_max, cfg.bits, cfg.n_candidates)  # n x Cout (conv) or n (linear)
        a_cands = candidates(a_max, cfg.bits, cfg.n_candidates)

        def distance(xq: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
            approx = torch.einsum("ngi,goi->ngo", xq, wq).reshape(len(x), -1)
            return (h * (approx - out).square()).sum(dim=0)  # per output channel

        for _ in range(cfg.rounds):
            xq = _quant_act(x, a_scale, layer.act_kind, cfg.bits)
            scores = torch.stack([distance(xq, uniform(w, c.reshape(w.shape[0], w.shape[1], 1) if per_channel else c, cfg.bits))
                                  for c in w_cands])  # n x Cout
            if per_channel:
                w_scale = w_cands.gather(0, scores.argmin(dim=0, keepdim=True))[0]
            else:
                w_scale = w_cands[scores.sum(dim=1).argmin()]
            wq = uniform(w, w_scale.reshape(w.shape[0], w.shape[1], 1) if per_channel else w_scale, cfg.bits)
            scores = torch.stack([distance(_quant_act(x, c, layer.act_kind, cfg.bits), wq).sum() for c in a_cands])
            a_scale = a_cands[scores.argmin()]
    layer.w_scale.copy_(w_scale.reshape(layer.w_scale.shape))
    layer.a_scale.copy_(a_scale.reshape(()))


def search_attention(layer: QuantAttention, cfg: PtqConfig, use_max: bool = False) -> None:
    """Head-wise q, k, v scales and the twin-uniform softmax scale of one attention layer."""
    q, k, v, a = (torch.cat([r[name] for r in layer.records]) for name in ("q", "k", "v", "a"))
    g_out = _hessian([r["grads"][0] for r in layer.records])  # the output's gradient arrives first in backward
    g_scores = _hessian([r["grads"][1] for r in layer.records])
    scores_fp = q @ k.transpose(-2, -1) * layer.scale
    out_fp = a @ v
    heads = q.shape[1]

    def head_max(t: torch.Tensor) -> torch.Tensor:
        return t.abs().transpose(0, 1).reshape(heads, -1).max(dim=1).values

    scales = {name: max_scale(head_max(t), cfg.bits) for name, t in (("q", q), ("k", k), ("v", v))}
    a_small = torch.tensor(1.0 / 2 ** (cfg.bits - 1))
    if not use_max:
        cands = {name: candidates(head_max(t), cfg.bits, cfg.n_candidates) for name, t in (("q", q), ("k", k), ("v", v))}
        a_cands = candidates(torch.tensor(1.0), cfg.bits, cfg.n_candidates)

        def per_head(dist: torch.Tensor) -> torch.Tensor:
            return dist.transpose(0, 1).reshape(heads, -1).sum(dim=1)

        def hq(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            return uniform(t, s.reshape(1, -1, 1, 1), cfg.bits)

        for _ in range(cfg.rounds):
            for name, other in (("q", "k"), ("k", "q")):
                fixed = hq(k if other == "k" else q, scales[other])
                results = []
                for c in cands[name]:
                    mine = hq(q if name == "q" else k, c)
                    s = (mine @ fixed.transpose(-2, -1) if name == "q" else fixed @ mine.transpose(-2, -1)) * layer.scale
                    results.append(per_head(g_scores * (s - scores_fp).square()))
                scales[name] = cands[name].gather(0, torch.stack(results).argmin(dim=0, keepdim=True))[0]
            aq = twin_softmax(a, a_small, cfg.bits)
            results = [per_head(g_out * (aq @ hq(v, c) - out_fp).square()) for c in cands["v"]]
            scales["v"] = cands["v"].gather(0, torch.stack(results).argmin(dim=0, keepdim=True))[0]
            vq = hq(v, scales["v"])
            results = [(g_out * (twin_softmax(a, c, cfg.bits) @ vq - out_fp).square()).sum() for c in a_cands]
            a_small = a_cands[torch.stack(results).argmin()]
    for name in ("q", "k", "v"):
        getattr(layer, f"{name}_scale").copy_(scales[name])
    layer.a_small.copy_(a_small.reshape(()))


def search(qencoder: torch.nn.Module, cfg: PtqConfig, use_max: bool = False, progress: bool = True,
           on_layer: Callable[[int, int], None] | None = None) -> None:
    """Set every layer's scales from its recorded statistics (``use_max``: plain max calibration instead)."""
    layers = [layer for layer in quant_layers(qencoder)]
    for i, layer in enumerate(tqdm(layers, desc="PTQ search", disable=not progress)):
        with torch.no_grad():
            if isinstance(layer, QuantAttention):
                search_attention(layer, cfg, use_max)
            else:
                search_weighted(layer, cfg, use_max)
        if on_layer:
            on_layer(i + 1, len(layers))


def clear(qencoder: torch.nn.Module) -> None:
    for layer in quant_layers(qencoder):
        layer.clear()


__all__ = ["PtqConfig", "collect", "decode_all", "fisher_loss", "grid_prompts", "qmax", "search", "task_loss"]
