"""INT8 (static QDQ encoder, dynamically quantized mask upscaler; onnxruntime.quantization) and FP16 versions of an
exported folder.

INT8: per-channel symmetric int8 weights, uint8 activations calibrated on real images. Measured on
TinySAM here (recipes/results/latency.md has the numbers): quantizing Conv, MatMul and Gemm with their
outputs kept float (int8 GEMMs that dequantize in the kernel) and leaving the convolutional stem and
first stage float is fastest; quantizing the outputs too, or the stage-0 convolutions, adds
Quantize/Dequantize pairs around every GELU on 256x256x256 activations and is slower than FP32.
LayerNorm, Softmax, GELU and residual Adds stay float. The QDQ file serves ORT CPU (VNNI/AMX
kernels) and TensorRT (explicit quantization) alike. The mask upscaler (masks.onnx, export version 5 on) gets int8
weights and per-call uint8 activations (dynamic quantization): its per-pixel Gemms are most of an everything-mode
mask's cost. The decoder stays FP32: its large products multiply two activations (image side by prompt tokens),
which dynamic quantization leaves float (it measured 1.09x per prompt).
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


def int8_files(manifest: OnnxManifest) -> dict[str, str]:
    """The INT8 precision's files: the INT8 encoder, the FP32 decoder and, where the folder has one, the INT8 mask
    upscaler."""
    files = {**manifest.files["fp32"], "encoder": INT8_ENCODER_FILE}
    if "masks" in files:
        files["masks"] = INT8_MASKS_FILE
    return files


def quantize_masks_int8(folder: str | os.PathLike) -> Path | None:
    """Write masks.int8.onnx (MatMul/Gemm with int8 weights, activations quantized per call) next to the FP32
    masks file; None for folders without one (export version 4 and older)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = Path(folder)
    source = OnnxManifest.read(folder).files["fp32"].get("masks")
    if source is None:
        return None
    out = folder / INT8_MASKS_FILE
    quantize_dynamic(str(folder / source), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    return out


def _update_manifest(folder: Path, precision: str, files: dict[str, str], extra: dict | None = None) -> None:
    OnnxManifest.read(folder).with_files(precision, files, extra).write(folder)


def quantize_int8(
    folder: str | os.PathLike,
    calibration_images: list[np.ndarray] | None = None,
    per_channel: bool = True,
    op_types: list[str] | None = None,
) -> Path:
    """Write encoder.int8.onnx (QDQ) next to encoder.onnx and masks.int8.onnx next to masks.onnx; the decoder stays
    FP32. Returns the encoder's path."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    folder = Path(folder)
    images = calibration_images if calibration_images is not None else default_calibration_images()
    reader = ImageCalibrationReader(images, OnnxManifest.read(folder).image_size)
    out = folder / INT8_ENCODER_FILE
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "encoder.prep.onnx"
        quant_pre_process(str(folder / ENCODER_FILE), str(prepared), skip_symbolic_shape=True)
        float_nodes = [n.name for n in onnx.load(str(prepared)).graph.node if any(p in n.name for p in FLOAT_NODE_PATTERNS)]
        quantize_static(
            str(prepared),
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=op_types or QUANTIZED_OPS,
            nodes_to_exclude=float_nodes,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={
                "WeightSymmetric": True,
                "ActivationSymmetric": False,
                "OpTypesToExcludeOutputQuantization": FLOAT_OUTPUT_OPS,
            },
        )
    quantize_masks_int8(folder)
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
            "masks": "dynamic: int8 weights, uint8 activations quantized per call, MatMul and Gemm",
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
