"""Build SAM / MobileSAM / TinySAM models and load official checkpoints strictly.

``sam_model_registry[kind](checkpoint=None)`` mirrors segment-anything; ``"vit_t"`` is TinySAM
(TinyViT-5M encoder, always-multimask decoder). Architectures can also be inferred from a checkpoint's
state_dict, so any official file loads by path alone.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from .errors import CheckpointError
from .hashing import file_sha256, state_dict_digest  # noqa: F401  (re-exported for older callers)
from .modeling import (
    VIT_B,
    VIT_H,
    VIT_L,
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TinyViT,
    TinyViTConfig,
    TwoWayTransformer,
    ViTConfig,
)

PROMPT_EMBED_DIM = 256
VIT_PATCH_SIZE = 16
TINYVIT_OUTPUT_STRIDE = 16


@dataclass(frozen=True)
class SamConfig:
    """Everything needed to build a Sam: the encoder config and the decoder's multimask behaviour."""

    encoder: TinyViTConfig | ViTConfig = field(default_factory=TinyViTConfig)
    always_multimask: bool = False

    @property
    def img_size(self) -> int:
        return self.encoder.img_size

    @property
    def embedding_size(self) -> int:
        stride = self.encoder.patch_size if isinstance(self.encoder, ViTConfig) else TINYVIT_OUTPUT_STRIDE
        return self.encoder.img_size // stride


def build_sam(config: SamConfig) -> Sam:
    """A Sam in eval mode with freshly initialised weights."""
    encoder = TinyViT(config.encoder) if isinstance(config.encoder, TinyViTConfig) else ImageEncoderViT(config.encoder)
    grid = config.embedding_size
    sam = Sam(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(PROMPT_EMBED_DIM, (grid, grid), (config.img_size, config.img_size)),
        mask_decoder=MaskDecoder(
            transformer_dim=PROMPT_EMBED_DIM,
            transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_EMBED_DIM, num_heads=8, mlp_dim=2048),
            always_multimask=config.always_multimask,
        ),
    )
    return sam.eval()


TINYSAM = SamConfig(TinyViTConfig(), always_multimask=True)
MOBILE_SAM = SamConfig(TinyViTConfig(), always_multimask=False)
SAM_VIT_B = SamConfig(VIT_B)
SAM_VIT_L = SamConfig(VIT_L)
SAM_VIT_H = SamConfig(VIT_H)


# ----------------------------------------------------------------------------------------------
# Checkpoint reading


def filter_checkpoint(obj: Any) -> dict[str, torch.Tensor]:
    """Unwrap the usual checkpoint containers into a plain Sam state_dict.

    Handles {"model": sd}, {"state_dict": sd}, {"module": sd}, ``module.`` prefixes (DataParallel/DDP),
    ``model.`` prefixes (Lightning), and checkpoints holding only an image encoder's keys are left as is
    so that the strict load names what is missing.
    """
    for _ in range(3):
        if isinstance(obj, Mapping) and not _looks_like_state_dict(obj):
            for key in ("model", "state_dict", "module", "model_state_dict"):
                if key in obj and isinstance(obj[key], Mapping):
                    obj = obj[key]
                    break
            else:
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError("checkpoint holds no state_dict (expected a mapping of parameter names to tensors)")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise CheckpointError("checkpoint mapping holds no tensors")
    for prefix in ("module.", "model.", "sam."):
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _looks_like_state_dict(obj: Mapping) -> bool:
    return any(isinstance(v, torch.Tensor) for v in obj.values())


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely (``weights_only=True``) and return its filtered state_dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file is empty: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the safe unpickler raises KeyError, IndexError, struct.error... on arbitrary bytes
        raise CheckpointError(f"cannot read checkpoint {path}: {_load_failure(exc)}") from exc
    return filter_checkpoint(obj)


def _load_failure(exc: Exception) -> str:
    """Why torch.load refused a file, in one line a user can act on."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    if "Weights only load failed" in first:
        return ("it holds Python objects other than tensors, which are not unpickled for safety, or it is not a "
                "PyTorch checkpoint at all")
    if isinstance(exc, (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError)):
        return f"{exc.__class__.__name__}: {first} (the file may be truncated, corrupted, or not a PyTorch checkpoint)"
    return f"not a PyTorch checkpoint ({exc.__class__.__name__} while unpickling)"


def load_state_dict_strict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load with strict key and shape checks; the error names missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mis_shaped = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state_dict))
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    ]
    if missing or unexpected or mis_shaped:
        raise CheckpointError(
            f"{source} does not match the model architecture: "
            + "; ".join(
                part
                for part in (
                    _summarise("missing keys", missing),
                    _summarise("unexpected keys", unexpected),
                    _summarise("shape mismatches", mis_shaped),
                )
                if part
            )
        )
    model.load_state_dict(dict(state_dict), strict=True)


def _summarise(what: str, items: list[str], limit: int = 8) -> str:
    if not items:
        return ""
    shown = ", ".join(items[:limit])
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"{len(items)} {what}: {shown}{more}"


# ----------------------------------------------------------------------------------------------
# Architecture inference from a state_dict


def infer_config(state_dict: Mapping[str, torch.Tensor], always_multimask: bool | None = None) -> SamConfig:
    """Work out the architecture that produced a Sam state_dict (TinyViT or ViT of any size).

    ``always_multimask`` defaults to True for TinyViT encoders (TinySAM) and False for ViT (SAM).
    """
    if "image_encoder.patch_embed.seq.0.c.weight" in state_dict:
        encoder: TinyViTConfig | ViTConfig = _infer_tinyvit(state_dict)
    elif "image_encoder.patch_embed.proj.weight" in state_dict:
        encoder = _infer_vit(state_dict)
    else:
        raise CheckpointError(
            "checkpoint is not a SAM/MobileSAM/TinySAM model: no image_encoder.patch_embed weights "
            f"(first keys: {', '.join(list(state_dict)[:5])})"
        )
    if always_multimask is None:
        always_multimask = isinstance(encoder, TinyViTConfig)
    return SamConfig(encoder, always_multimask)


def _count(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    indexes = {int(k[len(prefix) :].split(".")[0]) for k in state_dict if k.startswith(prefix)}
    return max(indexes) + 1 if indexes else 0


def _infer_tinyvit(sd: Mapping[str, torch.Tensor]) -> TinyViTConfig:
    n_stages = _count(sd, "image_encoder.layers.")
    dims, depths, heads, windows = [], [], [], []
    for i in range(n_stages):
        prefix = f"image_encoder.layers.{i}.blocks."
        depths.append(_count(sd, prefix))
        if i == 0:  # the convolutional stage has no attention; its heads/window are unused
            dims.append(sd[f"{prefix}0.conv1.c.weight"].shape[1])
            heads.append(TinyViTConfig().num_heads[0])
            windows.append(TinyViTConfig().window_sizes[0])
        else:
            biases = sd[f"{prefix}0.attn.attention_biases"]
            dims.append(sd[f"{prefix}0.attn.qkv.weight"].shape[1])
            heads.append(biases.shape[0])
            windows.append(round(biases.shape[1] ** 0.5))
    # A TinyViT state_dict does not record the input size; every official model uses 1024.
    return TinyViTConfig(
        embed_dims=tuple(dims),
        depths=tuple(depths),
        num_heads=tuple(heads),
        window_sizes=tuple(windows),
        out_chans=sd["image_encoder.neck.0.weight"].shape[0],
        num_classes=sd["image_encoder.head.weight"].shape[0],
    )


def _infer_vit(sd: Mapping[str, torch.Tensor]) -> ViTConfig:
    depth = _count(sd, "image_encoder.blocks.")
    proj = sd["image_encoder.patch_embed.proj.weight"]
    embed_dim, patch = proj.shape[0], proj.shape[-1]
    pos = sd.get("image_encoder.pos_embed")
    grid = pos.shape[1] if pos is not None else 64
    use_rel_pos = "image_encoder.blocks.0.attn.rel_pos_h" in sd
    if not use_rel_pos:
        raise CheckpointError("ViT checkpoints without relative positions cannot be inferred; build the model explicitly")
    head_dim = sd["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
    global_idx, window = [], 14
    for i in range(depth):
        size = (sd[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0] + 1) // 2
        if size == grid:
            global_idx.append(i)
        else:
            window = size
    return ViTConfig(
        img_size=grid * patch,
        patch_size=patch,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=embed_dim // head_dim,
        mlp_ratio=sd["image_encoder.blocks.0.mlp.lin1.weight"].shape[0] / embed_dim,
        out_chans=sd["image_encoder.neck.0.weight"].shape[0],
        window_size=window,
        global_attn_indexes=tuple(global_idx),
        use_rel_pos=True,
        use_abs_pos=pos is not None,
    )


# ----------------------------------------------------------------------------------------------
# Public builders


def sam_from_checkpoint(
    checkpoint: str | os.PathLike, config: SamConfig | None = None, always_multimask: bool | None = None
) -> Sam:
    """Load a checkpoint strictly; the architecture comes from ``config`` or is inferred from the file."""
    state_dict = read_checkpoint(checkpoint)
    if config is None:
        config = infer_config(state_dict, always_multimask)
    elif always_multimask is not None:
        config = SamConfig(config.encoder, always_multimask)
    sam = build_sam(config)
    load_state_dict_strict(sam, state_dict, source=f"checkpoint {checkpoint}")
    return sam.eval()


def _registry_builder(config: SamConfig) -> Callable[..., Sam]:
    def build(checkpoint: str | os.PathLike | None = None, always_multimask: bool | None = None) -> Sam:
        if checkpoint is None:
            if always_multimask is not None:
                return build_sam(SamConfig(config.encoder, always_multimask))
            return build_sam(config)
        return sam_from_checkpoint(checkpoint, config, always_multimask)

    return build


sam_model_registry: dict[str, Callable[..., Sam]] = {
    "default": _registry_builder(SAM_VIT_H),
    "vit_h": _registry_builder(SAM_VIT_H),
    "vit_l": _registry_builder(SAM_VIT_L),
    "vit_b": _registry_builder(SAM_VIT_B),
    "vit_t": _registry_builder(TINYSAM),
    "vit_t_mobile": _registry_builder(MOBILE_SAM),
}


