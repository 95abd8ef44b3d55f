"""INT8 (static QDQ encoder and mask upscaler; onnxruntime.quantization) and FP16 versions of an exported folder.

INT8: per-channel symmetric int8 weights, uint8 activations calibrated on real images. Measured on
TinySAM here (recipes/results/latency.md has the numbers): quantizing Conv, MatMul and Gemm with their
outputs kept float (int8 GEMMs that dequantize in the kernel) and leaving the convolutional stem and
first stage float is fastest; quantizing the outputs too, or the stage-0 convolutions, adds
Quantize/Dequantize pairs around every GELU on 256x256x256 activations and is slower than FP32.
LayerNorm, Softmax, GELU and residual Adds stay float. The QDQ file serves ORT CPU (VNNI/AMX
kernels) and TensorRT (explicit quantization) alike. The mask upscaler (masks.onnx, export version 5 on), whose
per-pixel Gemms are most of an everything-mode mask's cost, is quantized the same way, its activation ranges
calibrated on the FP32 graphs' mask features for point prompts on the same images. It was first quantized
dynamically (activation ranges measured per call): 1.1x faster than static, but a call's range spans all the prompts
of its batch, so a mask depended on its batch-mates and everything mode's output on the batch size, which is sized
from the memory the process holds (7, 16 and 40 prompts a batch gave different masks on 6 of 7 scenes; the FP32
and the static upscaler give identical ones). The decoder stays FP32: its large products multiply two activations
(image side by prompt tokens), which dynamic quantization leaves float (it measured 1.09x per prompt).
FP16: the float graph converted for GPUs (inputs and outputs stay float32).
Both update the folder's manifest. Imports no torch.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..transforms import ResizeLongestSide, normalize_and_pad
from .manifest import OnnxManifest
from .versions import ENCODER_FILE

INT8_ENCODER_FILE = "encoder.int8.onnx"
INT8_MASKS_FILE = "masks.int8.onnx"
QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]
FLOAT_OUTPUT_OPS = ["MatMul", "Gemm"]
# Node-name fragments of layers kept float: TinyViT's stem and its MBConv stage (huge activations
# between GELUs), see the module docstring.
FLOAT_NODE_PATTERNS = ("/patch_embed/", "/layers.0/")
DEFAULT_CALIBRATION_IMAGES = 8
MASK_CALIBRATION_PROMPTS = 8  # point prompts per calibration image for the mask upscaler's activation ranges


def default_calibration_images(count: int = DEFAULT_CALIBRATION_IMAGES) -> list[np.ndarray]:
    """Real photos and microscopy images that ship with scikit-image (no download), as H x W x 3 uint8."""
    from skimage import data

    names = ["astronaut", "coffee", "coins", "cell", "immunohistochemistry", "hubble_deep_field", "chelsea", "camera", "rocket", "moon"]
    images = []
    for name in names[:count]:
        img = getattr(data, name)()
        images.append(np.ascontiguousarray(np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]))
    return images


class ImageCalibrationReader:
    """onnxruntime CalibrationDataReader over images, preprocessed exactly as the runtime does."""

    def __init__(self, images: Iterable[np.ndarray], image_size: int) -> None:
        transform = ResizeLongestSide(image_size)
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            [{"image": normalize_and_pad(transform.apply_image(img), image_size)} for img in images]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # calibrators read once; kept for the interface
        pass


class MaskFeatureCalibrationReader(ImageCalibrationReader):
    """onnxruntime CalibrationDataReader over the mask upscaler's inputs: the mask features and weights that the
    folder's FP32 encoder and decoder give for ``prompts_per_image`` single-point prompts (uniform over the image,
    seeded) on each image."""

    def __init__(self, folder: str | os.PathLike, images: Iterable[np.ndarray], prompts_per_image: int = MASK_CALIBRATION_PROMPTS,
                 seed: int = 0) -> None:
        from ..backends.onnx_backend import OnnxBackend

        backend = OnnxBackend(folder, "fp32", providers=["CPUExecutionProvider"])
        transform = ResizeLongestSide(backend.image_size)
        rng = np.random.default_rng(seed)
        batches = []
        for image in images:
            embedding = backend.encode(transform.apply_image(image))
            height, width = image.shape[:2]
            points = np.stack([rng.uniform(0, width, prompts_per_image), rng.uniform(0, height, prompts_per_image)], axis=1)
            coords = transform.apply_coords(points, (height, width))[:, None, :].astype(np.float32)
            batches.append(backend.upscaler_feeds(embedding, coords, np.ones((prompts_per_image, 1), np.float32)))
        self._batches = iter(batches)


def int8_files(manifest: OnnxManifest) -> dict[str, str]:
    """The INT8 precision's files: the INT8 encoder, the FP32 decoder and, where the folder has one, the INT8 mask
    upscaler."""
    files = {**manifest.files["fp32"], "encoder": INT8_ENCODER_FILE}
    if "masks" in files:
        files["masks"] = INT8_MASKS_FILE
    return files


def quantize_masks_int8(folder: str | os.PathLike, images: list[np.ndarray], per_channel: bool = True) -> Path | None:
    """Write masks.int8.onnx (static QDQ: int8 weights, uint8 activations with ranges calibrated on ``images``'
    mask features, float outputs) next to the FP32 masks file; None for folders without one (export version 4 and
    older)."""
    folder = Path(folder)
    source = OnnxManifest.read(folder).files["fp32"].get("masks")
    if source is None:
        return None
    out = folder / INT8_MASKS_FILE
    # Only the per-pixel Gemms: the last product multiplies two activations. The pre-processing folds the graph,
    # which makes the Gemms' biases constants, as ORT needs to fuse each into one int8 QGemm.
    _quantize_static_qdq(folder / source, out, MaskFeatureCalibrationReader(folder, images), ["Gemm"], per_channel)
    return out


def masks_quantized_per_call(manifest: OnnxManifest) -> bool:
    """Whether a folder's INT8 mask upscaler is the dynamically quantized one that exports wrote until 2026-12-01,
    whose masks depend on the prompts batched with them: a cached folder holding one is quantized again."""
    return str(manifest.quantization.get("int8", {}).get("masks", "")).startswith("dynamic")


def _update_manifest(folder: Path, precision: str, files: dict[str, str], extra: dict | None = None) -> None:
    OnnxManifest.read(folder).with_files(precision, files, extra).write(folder)


def _quantize_static_qdq(source: Path, out: Path, reader: ImageCalibrationReader, op_types: list[str], per_channel: bool,
                         float_node_patterns: tuple[str, ...] = ()) -> None:
    """Write ``out``: ``source`` pre-processed (folded, shapes inferred), then ``op_types`` quantized as static QDQ -
    int8 symmetric weights, uint8 activations with MinMax ranges from ``reader``, float outputs (int8 GEMMs that
    dequantize in the kernel) - leaving float the nodes whose names contain one of ``float_node_patterns``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / source.name.replace(".onnx", ".prep.onnx")
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        float_nodes = [n.name for n in onnx.load(str(prepared)).graph.node if any(p in n.name for p in float_node_patterns)]
        quantize_static(
            str(prepared),
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=op_types,
            nodes_to_exclude=float_nodes,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={
                "WeightSymmetric": True,
                "ActivationSymmetric": False,
                "OpTypesToExcludeOutputQuantization": FLOAT_OUTPUT_OPS,
            },
        )


def quantize_int8(
    folder: str | os.PathLike,
    calibration_images: list[np.ndarray] | None = None,
    per_channel: bool = True,
    op_types: list[str] | None = None,
) -> Path:
    """Write encoder.int8.onnx (QDQ) next to encoder.onnx and masks.int8.onnx next to masks.onnx; the decoder stays
    FP32. Returns the encoder's path."""
    folder = Path(folder)
    images = calibration_images if calibration_images is not None else default_calibration_images()
    reader = ImageCalibrationReader(images, OnnxManifest.read(folder).image_size)
    out = folder / INT8_ENCODER_FILE
    _quantize_static_qdq(folder / ENCODER_FILE, out, reader, op_types or QUANTIZED_OPS, per_channel, FLOAT_NODE_PATTERNS)
    quantize_masks_int8(folder, images, per_channel)
    _update_manifest(
        folder,
        "int8",
        int8_files(OnnxManifest.read(folder)),
        {
            "method": "static QDQ, MinMax, uint8 activations, int8 per-channel weights",
            "ops": op_types or QUANTIZED_OPS,
            "float_outputs": FLOAT_OUTPUT_OPS,
            "float_node_patterns": list(FLOAT_NODE_PATTERNS),
            "per_channel": per_channel,
            "calibration_images": len(images),
            "masks": f"static QDQ, MinMax on {MASK_CALIBRATION_PROMPTS} point prompts an image, Gemm",
        },
    )
    return out


def convert_fp16(folder: str | os.PathLike) -> Path:
    """Write an FP16 copy of each FP32 file, NAME.fp16.onnx (float32 inputs/outputs kept), for GPU providers."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    folder = Path(folder)
    files = {}
    for role, src in OnnxManifest.read(folder).files["fp32"].items():  # encoder, decoder (and masks)
        files[role] = src.replace(".onnx", ".fp16.onnx")
        model = convert_float_to_float16(onnx.load(str(folder / src)), keep_io_types=True)
        onnx.save(model, str(folder / files[role]))
    _update_manifest(folder, "fp16", files)
    return folder
