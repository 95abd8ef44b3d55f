"""Export a Sam to three ONNX files: the image encoder, the prompt decoder and the mask upscaler.

encoder.onnx: ``image`` 1 x 3 x S x S float32 (normalised, padded; see transforms.normalize_and_pad)
  -> ``image_embeddings`` 1 x 256 x S/16 x S/16.
decoder.onnx: ``image_embeddings`` 1 x 256 x r x c, ``point_coords`` B x N x 2 float32 (x, y) input-frame
  pixels, ``point_labels`` B x N float32 (-1 pad, 0 bg, 1 fg, 2/3 box corners), ``mask_input``
  M x 1 x 4r x 4c float32 with M = B or 1 (one mask for all prompts; send one zero mask when there is
  none: the first decoder layer then reads one image for all prompts instead of one copy per prompt), ``has_mask_input``
  1 float32 -> ``iou_predictions`` B x 4, ``mask_features`` B x r x c x 256 and ``mask_weights`` B x 4 x 32
  (all four mask tokens; the backend picks tokens 1..3 or 0, so one file serves TinySAM's always-multimask
  and SAM's single-mask behaviour). r x c is the whole e x e grid (SAM's decoder), or from export version 8 on any
  top-left block of it: the decoder then attends to those feature pixels only (everything mode leaves out the
  padding of a non-square image).
masks.onnx: ``mask_features`` K x r x c x 256, ``mask_weights`` K x M x 32 -> ``low_res_masks`` K x M x 4r x 4c
  (r, c <= e: the top-left feature rows and columns, export version 7 on; e x e before). A separate graph so that
  everything mode upscales only the prompts whose predicted IoU passes its threshold, and only where the image is.
Folders of export version 4 and older have one decoder.onnx giving ``low_res_masks`` and ``iou_predictions``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..modeling import Sam
from .manifest import OnnxManifest
from .versions import DECODER_FILE, DEFAULT_OPSET, ENCODER_FILE, EXPORT_VERSION, MASKS_FILE


class EncoderGraph(nn.Module):
    """The image encoder alone (preprocessing happens in numpy before it)."""

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.image_encoder = sam.image_encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image)


class DecoderGraph(nn.Module):
    """Prompt encoder + mask decoder up to the masks, over a batch of prompts with unified point labels."""

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        # Kept as 1 x e x e x C: a block of rows is then one contiguous copy, with no transpose per call.
        pe_rows_first = sam.prompt_encoder.get_dense_pe().detach().permute(0, 2, 3, 1).contiguous()
        self.register_buffer("dense_pe_rows_first", pe_rows_first, persistent=False)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pe = self.prompt_encoder
        sparse = pe.embed_labeled_points(point_coords, point_labels.round().to(torch.int64))
        with_mask = pe.embed_masks(mask_input)
        no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = has_mask_input.reshape(1, 1, 1, 1) * with_mask + (1 - has_mask_input.reshape(1, 1, 1, 1)) * no_mask
        rows, columns = image_embeddings.shape[-2:]  # traced as the input's shape: any top-left block of the grid
        pe_tokens = self.dense_pe_rows_first[:, :rows, :columns].reshape(1, -1, self.dense_pe_rows_first.shape[-1])
        iou, features, weights, _ = self.mask_decoder.score_prompts(image_embeddings, pe_tokens, sparse, dense)
        return iou, features, weights


class MasksGraph(nn.Module):
    """The mask decoder's upscaling and per-token products: mask features and weights -> low-res logits."""

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.mask_decoder = sam.mask_decoder

    def forward(self, mask_features: torch.Tensor, mask_weights: torch.Tensor) -> torch.Tensor:
        return self.mask_decoder.masks_from_features(mask_features, mask_weights)


def export_onnx(
    sam: Sam,
    out_dir: str | os.PathLike,
    weights_hash: str,
    model_id: str,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
) -> Path:
    """Write encoder.onnx, decoder.onnx, masks.onnx and manifest.json to ``out_dir``; return the folder.

    With ``check`` the exported files are run with onnxruntime against the torch model right away
    (random image and prompts); a mismatch raises RuntimeError.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sam = sam.eval().float().cpu()
    size = sam.img_size
    grid = sam.prompt_encoder.image_embedding_size[0]
    low = 4 * grid
    with torch.no_grad(), warnings.catch_warnings():
        # Shape arithmetic on a fixed-size graph is what tracing is for; its warnings are noise here.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # Wrappers must be in eval mode: the exporter restores each module's mode afterwards, and a
        # wrapper left in training mode would switch the wrapped Sam (BatchNorm!) into training mode.
        torch.onnx.export(
            EncoderGraph(sam).eval(),
            (torch.zeros(1, 3, size, size),),
            str(out / ENCODER_FILE),
            input_names=["image"],
            output_names=["image_embeddings"],
            opset_version=opset,
            dynamo=False,
        )
        dummy = (
            torch.zeros(1, 256, grid, grid),
            torch.zeros(2, 3, 2),
            torch.tensor([[1.0, 0.0, -1.0], [2.0, 3.0, 1.0]]),
            torch.zeros(1, 1, low, low),
            torch.zeros(1),
        )
        # A traced graph keeps one way for every prompt count: the image side of each prompt is folded into its
        # tokens (see Attention), the image all prompts share (first layer) is projected once. Measured on 64-prompt
        # batches (everything mode) against folding that one too: see recipes/results/everything.md.
        with sam.mask_decoder.transformer.folding(True):
            torch.onnx.export(
                DecoderGraph(sam).eval(),
                dummy,
                str(out / DECODER_FILE),
                input_names=["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"],
                output_names=["iou_predictions", "mask_features", "mask_weights"],
                dynamic_axes={
                    "image_embeddings": {2: "feature_rows", 3: "feature_columns"},
                    "point_coords": {0: "num_prompts", 1: "num_points"},
                    "point_labels": {0: "num_prompts", 1: "num_points"},
                    "mask_input": {0: "num_masks", 2: "mask_rows", 3: "mask_columns"},
                    "iou_predictions": {0: "num_prompts"},
                    "mask_features": {0: "num_prompts", 1: "feature_rows", 2: "feature_columns"},
                    "mask_weights": {0: "num_prompts"},
                },
                opset_version=opset,
                dynamo=False,
            )
        channels = sam.mask_decoder.transformer_dim
        torch.onnx.export(
            MasksGraph(sam).eval(),
            (torch.zeros(2, grid, grid, channels), torch.zeros(2, 3, channels // 8)),
            str(out / MASKS_FILE),
            input_names=["mask_features", "mask_weights"],
            output_names=["low_res_masks"],
            # Any block of feature rows x columns from the top left: everything mode upscales only the part of the
            # frame that the image covers (the rest is padding no output pixel reads).
            dynamic_axes={
                "mask_features": {0: "num_prompts", 1: "feature_rows", 2: "feature_columns"},
                "mask_weights": {0: "num_prompts", 1: "num_masks"},
                "low_res_masks": {0: "num_prompts", 1: "num_masks", 2: "rows", 3: "columns"},
            },
            opset_version=opset,
            dynamo=False,
        )
    OnnxManifest(
        export_version=EXPORT_VERSION, model_id=model_id, weights_hash=weights_hash, image_size=size, embedding_size=grid,
        low_res_size=low, always_multimask=bool(sam.mask_decoder.always_multimask), opset=opset,
        files={"fp32": {"encoder": ENCODER_FILE, "decoder": DECODER_FILE, "masks": MASKS_FILE}},
    ).write(out)
    if check:
        check_parity(sam, out)
    return out


def check_parity(sam: Sam, folder: str | os.PathLike, atol_features: float = 1e-2, atol_logits: float = 2e-2) -> dict[str, float]:
    """Run the exported FP32 files and the torch model on one random image and prompt batch, decoded over the whole
    feature grid and over a top-left block of three quarters of its rows (a 4:3 image's part of the frame).

    Returns the max abs differences; raises RuntimeError when they exceed the tolerances.
    """
    import onnxruntime as ort

    folder = Path(folder)
    rng = np.random.default_rng(0)
    size = sam.img_size
    image = torch.from_numpy(rng.normal(size=(1, 3, size, size)).astype(np.float32))
    coords = torch.from_numpy(rng.uniform(0, size, size=(3, 2, 2)).astype(np.float32))
    labels = torch.tensor([[1.0, -1.0], [1.0, 0.0], [2.0, 3.0]])
    grid = sam.prompt_encoder.image_embedding_size[0]
    mask = torch.from_numpy(rng.normal(size=(3, 1, 4 * grid, 4 * grid)).astype(np.float32))
    has_mask = torch.ones(1)
    options = ort.SessionOptions()
    enc = ort.InferenceSession(str(folder / ENCODER_FILE), options, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(folder / DECODER_FILE), options, providers=["CPUExecutionProvider"])
    upscaler = ort.InferenceSession(str(folder / MASKS_FILE), options, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        features = sam.image_encoder(image)
    diffs = {"features": float(np.abs(enc.run(None, {"image": image.numpy()})[0] - features.numpy()).max()),
             "low_res_logits": 0.0, "iou": 0.0}
    for rows in (grid, grid * 3 // 4):
        block, block_mask = features[:, :, :rows], mask[:, :, : 4 * rows]
        with torch.no_grad():
            ref_iou, ref_features, ref_weights = DecoderGraph(sam).eval()(block, coords, labels, block_mask, has_mask)
            ref_masks = MasksGraph(sam).eval()(ref_features, ref_weights)
        ort_iou, ort_mask_features, ort_weights = dec.run(None, {
            "image_embeddings": block.numpy(), "point_coords": coords.numpy(), "point_labels": labels.numpy(),
            "mask_input": block_mask.numpy(), "has_mask_input": has_mask.numpy(),
        })
        ort_masks = upscaler.run(None, {"mask_features": ort_mask_features, "mask_weights": ort_weights})[0]
        diffs["low_res_logits"] = max(diffs["low_res_logits"], float(np.abs(ort_masks - ref_masks.numpy()).max()))
        diffs["iou"] = max(diffs["iou"], float(np.abs(ort_iou - ref_iou.numpy()).max()))
    if diffs["features"] > atol_features or diffs["low_res_logits"] > atol_logits or diffs["iou"] > atol_logits:
        raise RuntimeError(f"ONNX export does not match the torch model: {diffs}")
    return diffs
