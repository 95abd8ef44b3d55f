"""One way to open an engine and one way to build an everything-mode generator.

The Python API, the CLI, the web app, the napari plugin and the Ray actors all go through these two
functions, so a model's defaults (its tuned everything-mode thresholds) and the fallbacks are decided once.
"""

from __future__ import annotations

import sys
from typing import Any

from .amg import SamAutomaticMaskGenerator, SamHierarchicalMaskGenerator
from .backends.base import Backend
from .errors import TinySamAnnotateError
from .predictor import SamPredictor, as_backend
from .registry import DEFAULT_MODEL, find_model_file, get_spec

EVERYTHING_MODES = ("hierarchical", "grid")


def default_engine(backend: str | None = None) -> tuple[str, str]:
    """(backend, precision) when the user does not choose: ONNX Runtime INT8 (the shipped model's fast path)
    when onnxruntime is installed, else torch FP32. With ``backend`` given, that backend's default precision."""
    import importlib.util

    if backend is None:
        backend = "onnx" if importlib.util.find_spec("onnxruntime") is not None else "torch"
    return backend, ("int8" if backend == "onnx" else "fp32")


def engine_description(engine: Backend, backend: str | None, precision: str | None) -> str:
    """``onnx int8``, plus, when the user chose neither ``backend`` nor ``precision``, that it is the default."""
    text = f"{engine.identity.backend} {engine.identity.precision}"
    return text + ", the default engine; --backend torch for PyTorch" if backend is None and precision is None else text


def open_engine(model: str | None = None, backend: str | None = None, precision: str | None = None,
                providers: list[str] | None = None, strict: bool = False) -> Backend:
    """The engine of ``model`` (registry name, checkpoint or ONNX folder); without one, the shipped default
    model, or, in a checkout without it, TinySAM with random weights (torch FP32, with a warning) so that a
    pipeline still runs end to end. Unset ``backend`` / ``precision``: :func:`default_engine`, the app's."""
    from .loading import load_model, require_torch

    if model is None and find_model_file(get_spec(DEFAULT_MODEL)) is not None:
        model = DEFAULT_MODEL
    chosen = backend is not None or precision is not None
    backend, default_precision = default_engine(backend)
    precision = precision or default_precision
    if model is not None:
        return load_model(model, backend=backend, precision=precision, providers=providers, strict=strict)
    if chosen and (backend != "torch" or precision != "fp32"):
        raise TinySamAnnotateError(
            f"--backend {backend} --precision {precision} needs --model NAME|PATH: the default model "
            f"{DEFAULT_MODEL} is not in this checkout"
        )
    require_torch("random-weight TinySAM (the default model is missing)")
    import torch

    from .build import sam_model_registry

    print(
        f"warning: the default model {DEFAULT_MODEL} is missing from models/; using TinySAM with random weights, so "
        "the pipeline runs end to end but the mask is not meaningful. Pass --model NAME|PATH for real weights.",
        file=sys.stderr,
    )
    torch.manual_seed(0)
    return sam_model_registry["vit_t"]().as_backend()


def everything_generator(model: Any, mode: str = "hierarchical", **options: Any) -> SamAutomaticMaskGenerator:
    """TinySAM's hierarchical (default) or SAM's grid generator over ``model`` (an engine, a predictor or a torch
    Sam). ``options`` are the generators' keyword arguments (points_per_side, output_mode, thresholds, ...);
    unset thresholds are the ones the model was tuned for (decided by the generator itself)."""
    if mode not in EVERYTHING_MODES:
        raise ValueError(f"everything mode must be 'hierarchical' or 'grid', got {mode!r}")
    if not isinstance(model, SamPredictor):
        model = as_backend(model)
    cls = SamHierarchicalMaskGenerator if mode == "hierarchical" else SamAutomaticMaskGenerator
    return cls(model, **options)
