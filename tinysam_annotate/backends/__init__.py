"""Inference engines behind one interface (see :mod:`.base`)."""

from .base import Backend, ModelIdentity

__all__ = ["Backend", "ModelIdentity"]
