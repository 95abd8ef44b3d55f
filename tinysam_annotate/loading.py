"""``load_model``: one call from a registry name or a checkpoint path to a ready backend."""

from __future__ import annotations

import os
from pathlib import Path

from .backends.base import Backend
from .errors import ModelNotFoundError
from .registry import MODEL_SPECS, get_spec, require_model_file

BACKENDS = ("torch", "onnx")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")


def load_model(
    name_or_path: str | os.PathLike,
    backend: str = "torch",
    precision: str = "fp32",
    providers: list[str] | None = None,
    device: str | None = None,
) -> Backend:
    """Resolve a registry name (e.g. "tinysam") or a checkpoint file into a backend for SamPredictor.

    backend: "torch" (eager; precision "fp32" or "bf16" autocast). The ONNX Runtime backend is not in
    this build yet and raises a clear error.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if backend == "onnx":
        raise ValueError("the ONNX Runtime backend is not available in this build yet; use backend='torch'")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"the torch backend runs fp32 or bf16, not {precision!r}")

    from .backends.torch_backend import TorchBackend
    from .build import file_sha256, sam_from_checkpoint, sam_model_registry

    key = str(name_or_path)
    if key in MODEL_SPECS:
        spec = get_spec(key)
        path = require_model_file(spec)
        sam = sam_model_registry[spec.arch](checkpoint=path)
        model_id = spec.name
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ModelNotFoundError(
                f"{key!r} is neither a registered model ({', '.join(sorted(MODEL_SPECS))}) nor a checkpoint file"
            )
        sam = sam_from_checkpoint(path)
        model_id = type(sam.image_encoder).__name__
    return TorchBackend(sam, model_id=model_id, weights_hash=file_sha256(path), device=device, bf16=precision == "bf16")
