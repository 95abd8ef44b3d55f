"""Typed errors. Every one is a ValueError, so callers that catch ValueError keep working."""

from __future__ import annotations


class TinySamAnnotateError(ValueError):
    """Base class of the errors this package raises for bad input."""


class CheckpointError(TinySamAnnotateError):
    """A checkpoint file is missing, truncated, of the wrong architecture or not a state_dict."""


class ModelNotFoundError(TinySamAnnotateError):
    """A model name is not in the registry, or its file is not on this machine."""


class DownloadError(TinySamAnnotateError):
    """A model download failed (offline, HTTP error, or checksum mismatch)."""


class ImageError(TinySamAnnotateError):
    """An image could not be read or turned into the model's RGB view."""


class UnsupportedImageError(ImageError):
    """The file is empty, not an image, or of a layout we cannot interpret."""


class TruncatedImageError(ImageError):
    """The image file ends before its pixel data does."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than the configured limit (decompression-bomb guard)."""


class ChannelError(ImageError):
    """A multichannel image needs an explicit, valid channel choice."""


class PromptError(TinySamAnnotateError):
    """Prompts are malformed: wrong shape, NaN, outside the image, degenerate box, or none at all."""


class ImageNotSetError(TinySamAnnotateError, RuntimeError):
    """A prediction was asked for before an image was set."""


class ProviderError(TinySamAnnotateError):
    """Requested ONNX Runtime execution providers are not available (strict mode) or unknown."""


class TorchUnavailableError(TinySamAnnotateError, ImportError):
    """The torch engine, a checkpoint's first ONNX export or training was asked for without PyTorch installed."""


class SessionError(TinySamAnnotateError):
    """An action that does not apply to an annotation's current state (nothing to accept or undo, unknown object...)."""
