"""``load_model``: one call from a registry name, a checkpoint or an ONNX folder to a ready backend."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .backends.base import Backend
from .errors import ModelNotFoundError, TorchUnavailableError
from .paths import app_home
from .registry import MODEL_SPECS, get_spec, require_model_file

BACKENDS = ("torch", "onnx")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
TORCH_PRECISIONS = ("fp32", "bf16")
ONNX_PRECISIONS = ("fp32", "fp16", "int8")


def load_model(
    name_or_path: str | os.PathLike,
    backend: str = "torch",
    precision: str = "fp32",
    providers: list[str] | None = None,
    device: str | None = None,
    strict: bool = False,
) -> Backend:
    """Resolve a model into a backend that SamPredictor and the mask generators accept.

    name_or_path: a registry name ("tinysam", ...), a checkpoint file, or (onnx) a folder written by
    ``tinysam-annotate export``. backend "torch" runs fp32 or bf16 autocast on ``device``; backend
    "onnx" runs fp32/fp16/int8 files with ``providers`` (default TensorRT -> CUDA -> CPU; ``strict``
    raises instead of falling back). ONNX files missing for a checkpoint are exported (and, for int8,
    quantized) once and cached by weights hash and export version.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if backend == "torch" and precision not in TORCH_PRECISIONS:
        raise ValueError(f"the torch backend runs fp32 or bf16, not {precision!r}; use backend='onnx' for it")
    if backend == "onnx" and precision not in ONNX_PRECISIONS:
        raise ValueError(f"the onnx backend runs {', '.join(ONNX_PRECISIONS)}, not {precision!r}")

    path = Path(name_or_path)
    if backend == "onnx" and path.is_dir():
        return _onnx_backend(path, precision, providers, strict)
    checkpoint, model_id, arch = _resolve_checkpoint(name_or_path)
    from .hashing import file_sha256

    weights_hash = file_sha256(checkpoint)
    if backend == "onnx":
        folder = _shipped_onnx(name_or_path, weights_hash, precision) or ensure_onnx(checkpoint, model_id, weights_hash, arch, precision)
        return _onnx_backend(folder, precision, providers, strict)

    require_torch("the torch backend")
    from .backends.torch_backend import TorchBackend

    sam = _build_torch(checkpoint, arch)
    return TorchBackend(sam, model_id=model_id, weights_hash=weights_hash, device=device, bf16=precision == "bf16")


def _shipped_onnx(name_or_path: str | os.PathLike, weights_hash: str, precision: str) -> Path | None:
    """A registered model's shipped ONNX folder when it was exported from these weights and has ``precision``."""
    from .export.manifest import OnnxManifest
    from .registry import shipped_onnx_dir

    key = str(name_or_path)
    folder = shipped_onnx_dir(get_spec(key)) if key in MODEL_SPECS else None
    if folder is None:
        return None
    manifest = OnnxManifest.read(folder)
    if manifest.weights_hash != weights_hash or precision not in manifest.files:
        return None
    return folder


def _onnx_backend(folder: Path, precision: str, providers: list[str] | None, strict: bool) -> Backend:
    from .backends.onnx_backend import OnnxBackend

    return OnnxBackend(folder, precision=precision, providers=providers, strict=strict)


def _resolve_checkpoint(name_or_path: str | os.PathLike) -> tuple[Path, str, str | None]:
    """(checkpoint file, model id, registry arch or None to infer it from the file)."""
    key = str(name_or_path)
    if key in MODEL_SPECS:
        spec = get_spec(key)
        return require_model_file(spec), spec.name, spec.arch
    path = Path(name_or_path)
    if not path.is_file():
        raise ModelNotFoundError(
            f"{key!r} is neither a registered model ({', '.join(sorted(MODEL_SPECS))}), a checkpoint file, "
            "nor an exported ONNX folder"
        )
    return path, path.stem, None


def require_torch(what: str) -> None:
    """Raise TorchUnavailableError naming ``what`` when PyTorch is not installed (the runtime does not need it)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise TorchUnavailableError(f"{what} needs PyTorch, which is not installed: pip install 'tinysam-annotate[torch]' "
                                    "(ONNX models run without it: backend='onnx')")


def _build_torch(checkpoint: Path, arch: str | None):
    require_torch(f"loading the checkpoint {checkpoint.name} into torch (also for its first ONNX export)")
    from .build import sam_from_checkpoint, sam_model_registry

    return sam_model_registry[arch](checkpoint=checkpoint) if arch else sam_from_checkpoint(checkpoint)


def onnx_cache_dir(model_id: str, weights_hash: str) -> Path:
    from .export.versions import EXPORT_VERSION

    return app_home() / "onnx" / f"{model_id}-{weights_hash[:16]}-v{EXPORT_VERSION}"


def ensure_onnx(checkpoint: Path, model_id: str, weights_hash: str, arch: str | None, precision: str) -> Path:
    """The cached ONNX folder for a checkpoint, exporting / quantizing what ``precision`` needs."""
    from .export.manifest import OnnxManifest
    from .export.quantize import masks_quantized_per_call
    from .export.versions import MANIFEST_FILE

    folder = onnx_cache_dir(model_id, weights_hash)
    manifest = OnnxManifest.read(folder) if (folder / MANIFEST_FILE).is_file() else None
    have = manifest.files if manifest is not None else {}
    stale = manifest is not None and precision == "int8" and masks_quantized_per_call(manifest)
    if precision in have and not stale:
        return folder
    sam = _build_torch(checkpoint, arch)
    if "fp32" not in have:
        from .export.onnx_export import export_onnx

        export_onnx(sam, folder, weights_hash=weights_hash, model_id=model_id)
    _add_precision(folder, precision)
    return folder


def export_model(name_or_path: str | os.PathLike, out: str | os.PathLike, precisions: Sequence[str] = ("fp32", "int8"),
                 calibration_images: list[np.ndarray] | None = None, opset: int = 20,
                 log: Callable[[str], None] = lambda _: None) -> Path:
    """Export a registered model or a checkpoint file to an ONNX folder ``out``: FP32 encoder and decoder (parity with
    torch checked), then the INT8 encoder (calibrated on ``calibration_images``, H x W x 3 uint8; default: bundled
    samples) and / or FP16 when ``precisions`` name them. ``log`` hears each step."""
    from .export.onnx_export import export_onnx
    from .hashing import file_sha256

    checkpoint, model_id, arch = _resolve_checkpoint(name_or_path)
    sam = _build_torch(checkpoint, arch)
    folder = Path(out)
    log(f"exporting {model_id} to {folder} (opset {opset}) ...")
    export_onnx(sam, folder, weights_hash=file_sha256(checkpoint), model_id=model_id, opset=opset)
    log("FP32 encoder and decoder written; parity with torch checked")
    for precision in ("int8", "fp16"):
        if precision in precisions:
            log(f"converting to {precision.upper()} ...")
            _add_precision(folder, precision, calibration_images)
    return folder


def _add_precision(folder: Path, precision: str, calibration_images: list[np.ndarray] | None = None) -> None:
    """Add the INT8 encoder or the FP16 files to an exported FP32 folder (FP32 itself: nothing to do)."""
    if precision == "int8":
        from .export.quantize import quantize_int8

        quantize_int8(folder, calibration_images=calibration_images)
    elif precision == "fp16":
        from .export.quantize import convert_fp16

        convert_fp16(folder)
