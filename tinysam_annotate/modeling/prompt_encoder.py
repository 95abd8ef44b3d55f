"""SAM's prompt encoder: points, boxes and low-res masks -> sparse and dense prompt embeddings."""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import LayerNorm2d

# Point labels of the unified prompt format (the one SAM's ONNX decoder uses too).
LABEL_PADDING = -1
LABEL_BACKGROUND = 0
LABEL_FOREGROUND = 1
LABEL_BOX_TOP_LEFT = 2
LABEL_BOX_BOTTOM_RIGHT = 3


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding with random spatial frequencies (key ``positional_encoding_gaussian_matrix``)."""

    def __init__(self, num_pos_feats: int = 64, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """Encode (x, y) coordinates normalised to [0, 1]: ... x 2 -> ... x 2*num_pos_feats."""
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Dense encoding of an (h, w) grid of cell centres: C x h x w."""
        h, w = size
        grid = torch.ones((h, w), device=self.positional_encoding_gaussian_matrix.device, dtype=torch.float32)
        y_embed = (grid.cumsum(dim=0) - 0.5) / h
        x_embed = (grid.cumsum(dim=1) - 0.5) / w
        return self._pe_encoding(torch.stack([x_embed, y_embed], dim=-1)).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Encode B x N x 2 (x, y) pixel coordinates of an (h, w) input frame: B x N x C."""
        coords = coords.clone()
        coords[..., 0] = coords[..., 0] / image_size[1]
        coords[..., 1] = coords[..., 1] / image_size[0]
        return self._pe_encoding(coords.to(torch.float))


class PromptEncoder(nn.Module):
    """Encodes prompts in the model's input frame (long side = img_size) for the mask decoder."""

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int = 16,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # 0: background point, 1: foreground point, 2: box top-left, 3: box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid: 1 x C x h x w."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def embed_labeled_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Embed B x N x 2 (x, y) input-frame points with labels in {-1, 0, 1, 2, 3}: B x N x C.

        Label -1 marks padding, 0/1 background/foreground points, 2/3 the top-left/bottom-right box corners.
        """
        emb = self.pe_layer.forward_with_coords(coords + 0.5, self.input_image_size)
        labels = labels[..., None]
        emb = torch.where(labels == LABEL_PADDING, self.not_a_point_embed.weight.expand_as(emb), emb)
        for label, table in enumerate(self.point_embeddings):
            emb = emb + (labels == label).to(emb.dtype) * table.weight
        return emb

    def embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """B x 1 x 4h x 4w low-res mask logits -> B x C x h x w dense embeddings."""
        return self.mask_downscaling(masks)

    def no_mask_dense(self, batch: int) -> torch.Tensor:
        """The dense embedding used when no mask is given: B x C x h x w."""
        h, w = self.image_embedding_size
        return self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, h, w)

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """segment-anything's interface: points (B x N x 2, B x N), boxes B x 4 (x0, y0, x1, y1), masks B x 1 x H x W.

        Returns sparse embeddings B x K x C and dense embeddings B x C x h x w.
        """
        coords, labels = self.to_labeled_points(points, boxes, masks)
        if coords is None:
            batch = masks.shape[0] if masks is not None else 1
            sparse = torch.empty((batch, 0, self.embed_dim), device=self.no_mask_embed.weight.device)
        else:
            sparse = self.embed_labeled_points(coords, labels)
        dense = self.embed_masks(masks) if masks is not None else self.no_mask_dense(sparse.shape[0])
        return sparse, dense

    @staticmethod
    def to_labeled_points(
        points: tuple[torch.Tensor, torch.Tensor] | None, boxes: torch.Tensor | None, masks: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Merge points and boxes into one B x K x 2 coordinate tensor with unified labels.

        A padding point is appended after points when there is no box, as SAM does.
        """
        parts_xy, parts_lab = [], []
        if points is not None:
            xy, lab = points
            parts_xy.append(xy.to(torch.float))
            parts_lab.append(lab.to(torch.long))
            if boxes is None:
                parts_xy.append(torch.zeros_like(xy[:, :1, :], dtype=torch.float))
                parts_lab.append(torch.full_like(lab[:, :1], LABEL_PADDING, dtype=torch.long))
        if boxes is not None:
            corners = boxes.reshape(-1, 2, 2).to(torch.float)
            corner_labels = torch.tensor([LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT], device=corners.device)
            parts_xy.append(corners)
            parts_lab.append(corner_labels.expand(corners.shape[0], 2))
        if not parts_xy:
            return None, None
        batch = max(t.shape[0] for t in parts_xy)
        parts_xy = [t.expand(batch, -1, -1) for t in parts_xy]
        parts_lab = [t.expand(batch, -1) for t in parts_lab]
        return torch.cat(parts_xy, dim=1), torch.cat(parts_lab, dim=1)
