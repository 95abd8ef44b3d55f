"""Eager PyTorch engine over a :class:`~tinysam_annotate.modeling.Sam` (CPU or CUDA, optional bf16)."""

from __future__ import annotations

import contextlib
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch

from .base import LowResExtent, ModelIdentity, ScoredPrompts, feature_extent, top_left

if TYPE_CHECKING:  # Sam.as_backend() imports this module
    from ..modeling import Sam


def _as_tensor(array: np.ndarray, dtype: type) -> torch.Tensor:
    """Zero-copy tensor view of a (possibly read-only, e.g. cached) array; torch only reads it."""
    array = np.ascontiguousarray(array, dtype=dtype)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


class TorchBackend:
    """Runs a torch Sam. ``bf16=True`` uses bfloat16 autocast for the encoder (fast on CPUs with AMX)."""

    def __init__(
        self,
        sam: Sam,
        model_id: str = "sam",
        weights_hash: str | None = None,
        device: str | torch.device | None = None,
        bf16: bool = False,
    ) -> None:
        from ..hashing import state_dict_digest

        self.sam = sam.eval()
        if device is not None:
            self.sam.to(device)
        self.bf16 = bf16
        self.identity = ModelIdentity(
            model_id=model_id,
            weights_hash=weights_hash or state_dict_digest(sam),
            backend="torch",
            precision="bf16" if bf16 else "fp32",
        )
        self.image_size = sam.img_size
        self.low_res_size = 4 * sam.prompt_encoder.image_embedding_size[0]
        self.always_multimask = sam.mask_decoder.always_multimask
        self.scores_first = True  # score_prompts upscales only the rows asked for
        self._dense_pe: torch.Tensor | None = None

    @property
    def device(self) -> str:
        return str(self.sam.device)

    @property
    def device_description(self) -> str:
        return self.device

    def as_native(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(array)).to(self.sam.device)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.bf16:
            return torch.autocast(device_type=self.sam.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def encode_tensor(self, image: torch.Tensor) -> torch.Tensor:
        """B x 3 x h x w resized image (0..255) -> B x C x e x e float32 embeddings."""
        with self._autocast():
            features = self.sam.image_encoder(self.sam.preprocess(image.to(self.sam.device, torch.float32)))
        return features.float()

    def encode(self, resized_image: np.ndarray) -> np.ndarray:
        image = _as_tensor(resized_image, resized_image.dtype.type).permute(2, 0, 1)[None]
        return self.encode_tensor(image).cpu().numpy()

    def dense_pe(self) -> torch.Tensor:
        """Positional encoding of the embedding grid, computed once: 1 x C x e x e."""
        if self._dense_pe is None:
            with torch.inference_mode():
                self._dense_pe = self.sam.prompt_encoder.get_dense_pe()
        return self._dense_pe

    @torch.inference_mode()
    def decode_tensors(
        self,
        embedding: torch.Tensor,
        coords: torch.Tensor,
        labels: torch.Tensor,
        mask_input: torch.Tensor | None,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Torch version of :meth:`decode` (same shapes), staying on the model's device."""
        sparse, dense = self._prompt_embeddings(coords, labels, mask_input)
        return self.sam.mask_decoder(
            image_embeddings=embedding.to(self.sam.device),
            image_pe=self.dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )

    def _prompt_embeddings(
        self, coords: torch.Tensor, labels: torch.Tensor, mask_input: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse B x N x C and dense embeddings of the prompts, on the model's device; without a mask input the
        dense embedding has batch 1 (broadcast: the decoder then does the image-side work once)."""
        pe = self.sam.prompt_encoder
        device = self.sam.device
        sparse = pe.embed_labeled_points(coords.to(device, torch.float32), labels.to(device))
        if mask_input is not None:
            return sparse, pe.embed_masks(mask_input.to(device, torch.float32))
        return sparse, pe.no_mask_dense(1)

    def decode(
        self,
        embedding: np.ndarray,
        coords: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray | None,
        multimask_output: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        logits, iou = self.decode_tensors(
            _as_tensor(embedding, np.float32),
            _as_tensor(coords, np.float32),
            _as_tensor(labels, np.int64),
            None if mask_input is None else _as_tensor(mask_input, np.float32),
            multimask_output,
        )
        return logits.cpu().numpy(), iou.cpu().numpy()

    @torch.inference_mode()
    def score_prompts(
        self, embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray, multimask_output: bool,
        block: LowResExtent | None = None,
    ) -> ScoredPrompts:
        device = self.sam.device
        decoder = self.sam.mask_decoder
        sparse, dense = self._prompt_embeddings(_as_tensor(coords, np.float32), _as_tensor(labels, np.int64), None)
        height, width = feature_extent(block, (embedding.shape[-2], embedding.shape[-1]))
        image = _as_tensor(embedding[..., :height, :width], np.float32).to(device)
        iou, features, weights, _ = decoder.score_prompts(
            image, self.dense_pe()[..., :height, :width], sparse, dense[..., :height, :width]
        )
        keep = decoder.output_slice(multimask_output)
        weights = weights[:, keep]

        def masks_of(rows: np.ndarray, extent: LowResExtent | None = None) -> np.ndarray:
            index = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64)).to(device)
            feature_rows, feature_columns = feature_extent(extent, (features.shape[1], features.shape[2]))
            with torch.inference_mode():
                logits = decoder.masks_from_features(features[index, :feature_rows, :feature_columns], weights[index])
            return top_left(logits.float().cpu().numpy(), extent)

        return ScoredPrompts(iou[:, keep].float().cpu().numpy(), masks_of)
