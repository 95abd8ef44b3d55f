"""SAM's mask decoder, with TinySAM's always-multimask behaviour as a flag."""

from __future__ import annotations

import torch
from torch import nn

from .common import MLP, LayerNorm2d
from .transformer import TwoWayTransformer


class MaskDecoder(nn.Module):
    """Predicts low-res mask logits and IoU scores from image and prompt embeddings.

    ``always_multimask=True`` reproduces TinySAM: the three multimask outputs (tokens 1..3) are
    returned whatever ``multimask_output`` says. SAM and MobileSAM use ``False`` and honour the flag.
    """

    def __init__(
        self,
        transformer_dim: int = 256,
        transformer: nn.Module | None = None,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        always_multimask: bool = False,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer if transformer is not None else TwoWayTransformer(embedding_dim=transformer_dim)
        self.num_multimask_outputs = num_multimask_outputs
        self.always_multimask = always_multimask
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def output_slice(self, multimask_output: bool) -> slice:
        """Which of the mask tokens a call returns."""
        return slice(1, None) if (multimask_output or self.always_multimask) else slice(0, 1)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image_embeddings 1 x C x h x w (or B x ...), sparse B x N x C, dense B x C x h x w.

        Returns mask logits B x M x 4h x 4w and IoU predictions B x M (M = 3 or 1).
        """
        masks, iou_pred, _ = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        keep = self.output_slice(multimask_output)
        return masks[:, keep], iou_pred[:, keep]

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All mask tokens: logits B x 4 x 4h x 4w, IoU B x 4, and the output tokens B x (1 + 4) x C.

        ``image_embeddings`` and ``dense_prompt_embeddings`` may have batch 1 (broadcast over the B prompts):
        without mask inputs the dense embedding is the same for every prompt, and the first layer then projects
        the image once for all B prompts (or folds the projections into the tokens, see ``Attention``).
        """
        iou_pred, features, mask_weights, tokens = self.score_prompts(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        return self.masks_from_features(features, mask_weights), iou_pred, tokens

    def score_prompts(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The decoder up to its masks (same inputs as :meth:`predict_masks`; ``image_pe`` may also come as tokens,
        1 x (h w) x C, as the ONNX export passes it).

        Returns IoU predictions B x 4, mask features B x h x w x C (the transformer's image side,
        channel-last), mask weights B x 4 x C/8 (one per mask token) and the output tokens B x (1 + 4) x C.
        :meth:`masks_from_features` turns features and weights into logits: a caller that keeps only some
        prompts by their predicted IoU upscales only those (the upscaling is a third of the decoder's time).
        """
        batch = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat((output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse_prompt_embeddings), dim=1)

        # Broadcasting a 1-image embedding over the B prompts equals SAM's repeat_interleave and keeps
        # the batch dimension symbolic for ONNX export.
        src = image_embeddings + dense_prompt_embeddings
        h, w = src.shape[-2:]

        hs, src = self.transformer(src, image_pe, tokens)  # image_pe (either layout) broadcasts over the B prompts
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]
        mask_weights = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        iou_pred = self.iou_prediction_head(iou_token_out)
        return iou_pred, src.reshape(batch, h, w, -1), mask_weights, hs[:, : 1 + self.num_mask_tokens, :]

    def masks_from_features(self, features: torch.Tensor, mask_weights: torch.Tensor) -> torch.Tensor:
        """Mask features B x h x w x C and weights B x M x C/8 (any M of the mask tokens) -> logits B x M x 4h x 4w.

        ``output_upscaling`` (two 2x2 stride-2 transposed convolutions with LayerNorm2d and GELUs) and the token
        products, computed per feature pixel: a 2x2 stride-2 transposed convolution maps each input pixel to its
        own 2x2 output pixels, LayerNorm2d and GELU act per pixel, and so does the token product, so each of the
        h x w features becomes its 4 x 4 logits without moving the 64- and 32-channel intermediates into image
        order; only the M-channel logits are shuffled at the end. Same result as the nn.Sequential on B x C x h x w
        (to float rounding), about twice as fast in ONNX Runtime; the parameters keep the official layout.
        """
        batch, h, w, channels = features.shape
        up1, norm, act1, up2, act2 = self.output_upscaling
        x = _deconv2x2_per_pixel(features.reshape(-1, channels), up1)  # (B h w 2 2) x C/4
        x = act1(torch.nn.functional.layer_norm(x, tuple(norm.weight.shape), norm.weight, norm.bias, norm.eps))
        x = act2(_deconv2x2_per_pixel(x, up2))  # (B h w 2 2 2 2) x C/8, sub-pixels (i1, j1, i2, j2)
        logits = x.reshape(batch, -1, x.shape[-1]) @ mask_weights.transpose(1, 2)  # B x (h w 2 2 2 2) x M
        # output row 4y + 2 i1 + i2, column 4x + 2 j1 + j2
        logits = logits.reshape(batch, h, w, 2, 2, 2, 2, -1).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return logits.reshape(batch, -1, 4 * h, 4 * w)


def _deconv2x2_per_pixel(x: torch.Tensor, deconv: nn.ConvTranspose2d) -> torch.Tensor:
    """P x Cin pixels -> (P 2 2) x Cout: each pixel's 2 x 2 output pixels (rows i, columns j) of ``deconv`` (kernel
    2, stride 2), as one matrix product with the bias added in it (a Gemm in ONNX)."""
    weight = deconv.weight  # Cin x Cout x 2 x 2
    c_out = weight.shape[1]
    per_pixel = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], 4 * c_out)  # Cin x (i j Cout)
    return torch.addmm(deconv.bias.repeat(4), x, per_pixel).reshape(-1, c_out)
