"""SamPredictor: segment-anything's interactive predictor over any backend, with an embedding cache.

``SamPredictor(sam)`` accepts any object that implements :class:`~tinysam_annotate.backends.Backend`, or
a model that makes one (a torch :class:`Sam` has ``as_backend()``); this module never imports torch.
The image embedding is computed once per image (or fetched from the cache) and every prompt is then
decoded against it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backends.base import Backend
from .cache import EmbeddingCache, embedding_key
from .errors import ImageNotSetError, PromptError
from .io.image import as_model_view
from .prompts import to_decoder_inputs, validate_prompts
from .transforms import ResizeLongestSide, UpsampleFrame, postprocess_masks, preprocess_shape


def as_backend(model: Any) -> Backend:
    """The object itself when it is a Backend, else the engine it makes (``model.as_backend()``, e.g. a torch Sam)."""
    if isinstance(model, Backend):
        return model
    make = getattr(model, "as_backend", None)
    if callable(make):
        return make()
    raise TypeError(f"expected a Sam model or a Backend, got {type(model).__name__}")


def _to_numpy(tensor: Any) -> np.ndarray | None:
    """A torch tensor (any device) or array-like as a numpy array; None stays None."""
    if tensor is None:
        return None
    if hasattr(tensor, "detach"):
        tensor = tensor.detach().cpu()
    return np.asarray(tensor)


@dataclass(frozen=True)
class EmbeddedImage:
    """The current image of a predictor: its embedding 1 x C x e x e, its (H, W), and its (H, W) once resized
    so that its longest side is the encoder's input size."""

    features: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]


class SamPredictor:
    """Compute an image embedding once, then predict masks for many prompts quickly."""

    mask_threshold: float = 0.0
    _image: EmbeddedImage | None

    def __init__(self, sam_model: Any, cache: EmbeddingCache | None = None) -> None:
        self.backend = as_backend(sam_model)
        self.model = sam_model
        self.cache = cache if cache is not None else EmbeddingCache()
        self.transform = ResizeLongestSide(self.backend.image_size)
        self.last_encode_seconds = 0.0  # this predictor's last set_image (a cache hit included)
        self.last_decode_seconds = 0.0  # this predictor's last predict, masks upsampled included
        self.last_cache_hit = False
        self.reset_image()

    # -- image ------------------------------------------------------------------------------------

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Embed an image. ``image``: H x W x 3 uint8 in ``image_format`` ("RGB" or "BGR").

        Other arrays (grey, 16-bit, float, RGBA, channel-first) are converted to the RGB view first
        by :func:`tinysam_annotate.io.as_model_view`.
        """
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        rgb = as_model_view(image)
        if image_format == "BGR":
            rgb = np.ascontiguousarray(rgb[..., ::-1])
        start = time.perf_counter()
        features, self.last_cache_hit = self._cached_embedding(rgb)
        self.last_encode_seconds = time.perf_counter() - start
        self._set_features(features, rgb.shape[:2])

    def precompute(self, image: np.ndarray) -> bool:
        """Compute and cache the embedding of ``image`` (as for :meth:`set_image`, RGB) without making it the
        current image: a background prefetch, safe beside prompts on the current image. True if the encoder ran."""
        _, from_cache = self._cached_embedding(as_model_view(image))
        return not from_cache

    def _cached_embedding(self, rgb: np.ndarray) -> tuple[np.ndarray, bool]:
        """The embedding of an H x W x 3 uint8 RGB image from the cache, else from the encoder (then cached);
        and whether it came from the cache."""
        key = embedding_key(rgb, self.backend.identity)
        features = self.cache.get(key, self.embedding_shape)
        if features is not None:
            return features, True
        features = self.backend.encode(self.transform.apply_image(rgb))
        self.cache.put(key, features)
        return features, False

    @property
    def embedding_shape(self) -> tuple[int | None, ...]:
        """The shape this engine's embeddings have: 1 x C x e x e with e = low_res_size / 4 (C left open)."""
        side = self.backend.low_res_size // 4
        return (1, None, side, side)

    def is_cached(self, image: np.ndarray) -> bool:
        """Whether :meth:`set_image` on this RGB image would hit the embedding cache (no encoder pass)."""
        return embedding_key(as_model_view(image), self.backend.identity) in self.cache

    def set_torch_image(self, transformed_image: Any, original_image_size: tuple[int, ...]) -> None:
        """Embed an image already resized with ResizeLongestSide: a 1 x 3 x h x w torch tensor, values 0..255."""
        if transformed_image.ndim != 4 or transformed_image.shape[:2] != (1, 3):
            raise ValueError(f"set_torch_image expects a 1 x 3 x h x w tensor, got {tuple(transformed_image.shape)}")
        if max(transformed_image.shape[2:]) != self.backend.image_size:
            raise ValueError(f"set_torch_image input must have its long side == {self.backend.image_size}")
        resized = transformed_image[0].permute(1, 2, 0).detach().cpu().float().numpy()
        start = time.perf_counter()
        features = self.backend.encode(resized)
        self.last_encode_seconds = time.perf_counter() - start
        self.last_cache_hit = False
        self._set_features(features, (int(original_image_size[0]), int(original_image_size[1])))

    def set_embedding(self, features: np.ndarray, original_image_size: tuple[int, int]) -> None:
        """Use a precomputed 1 x C x e x e embedding for an image of (H, W) pixels."""
        self._set_features(np.asarray(features, dtype=np.float32), original_image_size)

    def _set_features(self, features: np.ndarray, original_size: tuple[int, int]) -> None:
        size = (int(original_size[0]), int(original_size[1]))
        self._image = EmbeddedImage(features, size, preprocess_shape(*size, self.backend.image_size))

    def reset_image(self) -> None:
        """Forget the current image."""
        self._image = None

    # segment-anything's SamPredictor attributes, None while no image is set
    @property
    def is_image_set(self) -> bool:
        return self._image is not None

    @property
    def features(self) -> np.ndarray | None:
        return None if self._image is None else self._image.features

    @property
    def original_size(self) -> tuple[int, int] | None:
        return None if self._image is None else self._image.original_size

    @property
    def input_size(self) -> tuple[int, int] | None:
        return None if self._image is None else self._image.input_size

    def get_image_embedding(self) -> Any:
        """The current embedding, 1 x C x e x e (C=256, e=64): a torch tensor for torch models, else numpy."""
        return self.backend.as_native(self.embedded_image().features)

    @property
    def device(self) -> str:
        return self.backend.device

    def embedded_image(self) -> EmbeddedImage:
        """The current image; ImageNotSetError when none is set."""
        if self._image is None:
            raise ImageNotSetError("an image must be set with .set_image(...) before mask prediction")
        return self._image

    # -- prediction -------------------------------------------------------------------------------

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for prompts in original-image (x, y) pixels.

        point_coords N x 2 with point_labels N (1 foreground, 0 background); box 4 as (x0, y0, x1, y1),
        or B x 4 for a batch of boxes (points then apply to every box); mask_input 1 x 256 x 256 logits
        from a previous call. Returns masks C x H x W (bool, or float logits with return_logits),
        IoU predictions C, and low-res logits C x 256 x 256; with a batch of boxes each gains a
        leading B axis. C is 3 with multimask_output (always for TinySAM), else 1.
        """
        size = self.embedded_image().original_size
        prompts = validate_prompts(size, point_coords, point_labels, box, mask_input, self.backend.low_res_size)
        points = self.transform.apply_coords(prompts.points, size)
        boxes = None if prompts.boxes is None else self.transform.apply_boxes(prompts.boxes, size)
        start = time.perf_counter()
        masks, iou, low_res = self._decode(points, prompts.labels, boxes, prompts.mask_input, multimask_output, return_logits)
        self.last_decode_seconds = time.perf_counter() - start
        if prompts.batched:
            return masks, iou, low_res
        return masks[0], iou[0], low_res[0]

    def predict_torch(
        self,
        point_coords: Any,
        point_labels: Any,
        boxes: Any = None,
        mask_input: Any = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[Any, Any, Any]:
        """Batched prediction with prompts already in the input frame (see ResizeLongestSide).

        point_coords B x N x 2 (x, y), point_labels B x N, boxes B x 4, mask_input B x 1 x 256 x 256 (torch
        tensors or arrays). Returns masks B x C x H x W, IoU B x C and low-res logits B x C x 256 x 256 as the
        engine's tensors (torch tensors on the model's device for a torch model).
        """
        self.embedded_image()
        if point_coords is None and boxes is None and mask_input is None:
            raise PromptError("no prompt given: pass point_coords/point_labels, boxes, or mask_input")
        if (point_coords is None) != (point_labels is None):
            raise PromptError("point_coords and point_labels must be given together")
        points, labels, box_np, mask_np = map(_to_numpy, (point_coords, point_labels, boxes, mask_input))
        batch = max(a.shape[0] for a in (points, box_np, mask_np) if a is not None)
        if points is None or labels is None:  # given together or not at all
            points, labels = np.zeros((batch, 0, 2), np.float32), np.zeros((batch, 0), np.int64)
        masks, iou, low_res = self._decode(points, labels, box_np, mask_np, multimask_output, return_logits)
        return tuple(self.backend.as_native(np.ascontiguousarray(a)) for a in (masks, iou, low_res))  # type: ignore[return-value]

    def _decode(
        self,
        points: np.ndarray,
        labels: np.ndarray,
        boxes: np.ndarray | None,
        mask_input: np.ndarray | None,
        multimask_output: bool,
        return_logits: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image = self.embedded_image()
        coords, unified_labels = to_decoder_inputs(points, labels, boxes)
        low_res, iou = self.backend.decode(image.features, coords, unified_labels, mask_input, multimask_output)
        if return_logits:
            return postprocess_masks(low_res, self.backend.image_size, image.input_size, image.original_size), iou, low_res
        return self._binary_masks(low_res, image), iou, low_res

    def _binary_masks(self, low_res: np.ndarray, image: EmbeddedImage) -> np.ndarray:
        """B x M x H x W boolean masks, upsampling each only around its extent (exact; fast for small objects)."""
        frame = UpsampleFrame.build(self.backend.low_res_size, self.backend.image_size, image.input_size, image.original_size)
        masks = np.zeros((*low_res.shape[:2], *image.original_size), dtype=bool)
        for b in range(low_res.shape[0]):
            for m in range(low_res.shape[1]):
                found = frame.block(low_res[b, m], self.mask_threshold)
                if found is not None:
                    rows, cols, block = found
                    masks[b, m, rows, cols] = block > self.mask_threshold
        return masks
