"""Image input (any dtype and layout -> the model's RGB view) and, later, annotation export/import."""

from .image import ImageSource, LoadedImage, as_model_view, from_array, infer_axes, load_image, plane_to_rgb, read_image
from .normalize import to_uint8

__all__ = [
    "ImageSource",
    "LoadedImage",
    "as_model_view",
    "from_array",
    "infer_axes",
    "load_image",
    "plane_to_rgb",
    "read_image",
    "to_uint8",
]
