"""Automatic ("segment everything") mask generation: SAM's grid and TinySAM's hierarchical strategy."""

from .generator import GenerationCancelled, SamAutomaticMaskGenerator
from .hierarchical import SamHierarchicalMaskGenerator

__all__ = ["GenerationCancelled", "SamAutomaticMaskGenerator", "SamHierarchicalMaskGenerator"]
