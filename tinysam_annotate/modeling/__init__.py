"""Torch modules of SAM, MobileSAM and TinySAM with the official checkpoints' state_dict keys."""

from .image_encoder_vit import VIT_B, VIT_H, VIT_L, ImageEncoderViT, ViTConfig
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .sam import Sam
from .tiny_vit import TinyViT, TinyViTConfig
from .transformer import TwoWayTransformer

__all__ = [
    "VIT_B",
    "VIT_H",
    "VIT_L",
    "ImageEncoderViT",
    "MaskDecoder",
    "PromptEncoder",
    "Sam",
    "TinyViT",
    "TinyViTConfig",
    "TwoWayTransformer",
    "ViTConfig",
]
