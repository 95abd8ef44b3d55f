"""PTQ end to end: calibrate a Sam's encoder, evaluate the task loss, export a QDQ ONNX encoder.

What QDQ cannot express, and how the export handles it:

- twin-uniform (two scales in one tensor) for post-softmax and post-GELU activations: QDQ has one scale
  per tensor, so the deployed graph uses one int8 grid: 1/127 over [0, 1] after softmax, and the
  searched positive-range scale after GELU (negatives fall on the same grid);
- head-wise scales on the attention matmul inputs: activations get one scale per tensor in QDQ (integer
  kernels need per-tensor activations), so the largest head's scale is used;
- bit widths below 8: QuantizeLinear is int8/uint8, so only the 8-bit model is exported (6-bit stays a
  fake-quant evaluation model).
Per-channel conv weights, per-layer linear weights and the searched activation scales carry over exactly.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from tinysam_annotate.modeling import Sam
from tinysam_annotate.transforms import ResizeLongestSide, normalize_and_pad

from .layers import quant_layers, quantize_encoder, set_mode
from .search import PtqConfig, clear, collect, decode_all, grid_prompts, search, task_loss


def prepare_images(images: Iterable[np.ndarray], image_size: int) -> list[torch.Tensor]:
    """H x W x 3 uint8 images -> 1 x 3 x S x S model inputs, preprocessed as at inference."""
    transform = ResizeLongestSide(image_size)
    return [torch.from_numpy(normalize_and_pad(transform.apply_image(img), image_size)) for img in images]


def with_encoder(sam: Sam, encoder: torch.nn.Module) -> Sam:
    """A shallow copy of ``sam`` whose image encoder is ``encoder`` (decoder shared, float)."""
    out = copy.copy(sam)
    out._modules = dict(sam._modules)
    out._modules["image_encoder"] = encoder
    return out


def calibrate(sam: Sam, images: list[torch.Tensor], cfg: PtqConfig, use_max: bool = False, progress: bool = True) -> Sam:
    """The fake-quant model: searched scales (or plain max calibration with ``use_max``), quantization on."""
    qencoder = quantize_encoder(sam.image_encoder, cfg.bits)
    collect(sam, qencoder, images, cfg, progress)
    search(qencoder, cfg, use_max=use_max, progress=progress)
    clear(qencoder)
    set_mode(qencoder, enabled=True)
    qencoder.requires_grad_(False)
    return with_encoder(sam, qencoder)


def calibrate_variants(sam: Sam, images: list[torch.Tensor], variants: list[tuple[int, bool]], cfg: PtqConfig,
                       progress: bool = True):
    """Collect statistics once, then yield ((bits, use_max), fake-quant Sam) per variant in order.

    The same recorded rows serve every bit width and both calibrations (statistics do not depend on
    them); each yielded model is only valid until the next one is requested.
    """
    qencoder = quantize_encoder(sam.image_encoder, cfg.bits)
    collect(sam, qencoder, images, cfg, progress)
    quantized = with_encoder(sam, qencoder)
    for bits, use_max in variants:
        for layer in quant_layers(qencoder):
            layer.bits = bits
        set_mode(qencoder, enabled=False)
        search(qencoder, replace(cfg, bits=bits), use_max=use_max, progress=progress)
        set_mode(qencoder, enabled=True)
        yield (bits, use_max), quantized
    clear(qencoder)


@torch.no_grad()
def mean_task_loss(fp: Sam, quantized: Sam, images: list[torch.Tensor], prompt_grid: int = 8) -> float:
    """KL(masks) + KL(IoUs) of the quantized model from the float one, averaged over images and grid prompts."""
    coords, labels = grid_prompts(prompt_grid, fp.img_size)
    losses = []
    for image in images:
        logits_fp, iou_fp = decode_all(fp, fp.image_encoder(image), coords, labels)
        logits_q, iou_q = decode_all(fp, quantized.image_encoder(image), coords, labels)
        losses.append(float(task_loss(logits_q, iou_q, logits_fp, iou_fp)))
    return float(np.mean(losses))


@torch.no_grad()
def mask_agreement(fp: Sam, quantized: Sam, images: list[torch.Tensor], prompt_grid: int = 8) -> float:
    """Median IoU between the float and quantized best masks (by predicted IoU) over grid prompts."""
    coords, labels = grid_prompts(prompt_grid, fp.img_size)
    ious = []
    for image in images:
        outputs = []
        for model in (fp, quantized):
            logits, iou = decode_all(fp, model.image_encoder(image), coords, labels)
            outputs.append(logits[torch.arange(len(logits)), iou.argmax(1)] > 0)
        inter = (outputs[0] & outputs[1]).flatten(1).sum(1).float()
        union = (outputs[0] | outputs[1]).flatten(1).sum(1).float()
        ious.append(torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter)))
    return float(torch.cat(ious).median())


def export_qdq_encoder(quantized: Sam, path: str | os.PathLike, opset: int = 20) -> Path:
    """Write the 8-bit fake-quant encoder as a QDQ ONNX graph (input ``image``, output ``image_embeddings``)."""
    from tinysam_annotate.export.onnx_export import EncoderGraph

    encoder = quantized.image_encoder
    bits = {layer.bits for layer in encoder.modules() if hasattr(layer, "bits")}
    if bits != {8}:
        raise ValueError(f"QDQ ONNX holds int8 only; this model was calibrated with {sorted(bits)} bits")
    set_mode(encoder, enabled=True, deploy=True)
    try:
        size = quantized.img_size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the scales are constants on purpose
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: it writes QDQ from fake-quant ops
            torch.onnx.export(EncoderGraph(quantized).eval(), (torch.zeros(1, 3, size, size),), str(path),
                              input_names=["image"], output_names=["image_embeddings"], opset_version=opset, dynamo=False)
    finally:
        set_mode(encoder, enabled=True, deploy=False)
    return Path(path)


def install_int8(folder: str | os.PathLike, qdq_encoder: str | os.PathLike, details: dict) -> None:
    """Make ``qdq_encoder`` the int8 encoder of an exported ONNX folder (manifest updated atomically)."""
    from tinysam_annotate.export.manifest import OnnxManifest
    from tinysam_annotate.export.quantize import (
        INT8_ENCODER_FILE,
        INT8_MASKS_FILE,
        default_calibration_images,
        int8_files,
        quantize_masks_int8,
    )

    folder = Path(folder)
    target = folder / INT8_ENCODER_FILE
    if Path(qdq_encoder).resolve() != target.resolve():
        os.replace(qdq_encoder, target)
    if not (folder / INT8_MASKS_FILE).exists():
        quantize_masks_int8(folder, default_calibration_images())
    manifest = OnnxManifest.read(folder)
    manifest.with_files("int8", int8_files(manifest), details).write(folder)
