"""tinysam-annotate: interactive segmentation annotation on TinySAM / MobileSAM / SAM.

The public API mirrors segment-anything, so SAM code ports by changing one import::

    from tinysam_annotate import sam_model_registry, SamPredictor
    sam = sam_model_registry["vit_t"](checkpoint="tinysam.pth")
    predictor = SamPredictor(sam)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "SamPredictor",
    "SamAutomaticMaskGenerator",
    "SamHierarchicalMaskGenerator",
    "sam_model_registry",
    "load_model",
    "EmbeddingCache",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # Lazy so that the torch-free parts (io, cache, predictor over an ONNX backend) never import torch.
    if name == "sam_model_registry":
        from .build import sam_model_registry

        return sam_model_registry
    if name == "SamPredictor":
        from .predictor import SamPredictor

        return SamPredictor
    if name in ("SamAutomaticMaskGenerator", "SamHierarchicalMaskGenerator"):
        from . import amg

        return getattr(amg, name)
    if name == "EmbeddingCache":
        from .cache import EmbeddingCache

        return EmbeddingCache
    if name == "load_model":
        from .loading import load_model

        return load_model
    raise AttributeError(f"module 'tinysam_annotate' has no attribute {name!r}")
