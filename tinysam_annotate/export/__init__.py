"""ONNX export of the image encoder and the prompt-encoder + mask-decoder, and INT8/FP16 conversion.

Importing this package does not import torch; ``onnx_export`` does.
"""

from .versions import EXPORT_VERSION

__all__ = ["EXPORT_VERSION"]
