"""SAM's two-way transformer: prompt tokens and image tokens attend to each other."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLPBlock


class Attention(nn.Module):
    """Multi-head attention whose q/k/v projections may downsample the channel dimension.

    The decoder's cross-attentions pair a few prompt tokens (N, about 5-15) with many image tokens
    (M = 4096). ``attend_few_queries`` / ``attend_few_keys`` compute the same result as ``forward`` but may
    fold the image side's projections into the token side (matrix products reassociated), which turns two
    M x C x C/2 projections into two M x C x (heads * N) products: about 2.3x fewer multiply-adds for
    N = 7. An image shared by all B prompts (the first layer, without mask inputs) is better projected once
    for all of them; the output projection of the image->token attention folds into the N token values
    either way. ``fold_projections`` decides: None picks the cheaper way from the shapes of each call; True
    folds every image side that has a row per prompt and projects a shared one once (the ONNX export: a
    traced graph keeps one way, and everything mode sends 64 prompts per call); False never folds.
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError("num_heads must divide embedding_dim // downsample_rate")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)
        self.fold_projections: bool | None = None

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def _head_weights(self, linear: nn.Linear) -> torch.Tensor:
        """A projection's weight per head: heads x head_dim x C (the rows of head h are h*d .. (h+1)*d)."""
        return linear.weight.reshape(self.num_heads, -1, linear.weight.shape[1])

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q_proj(q)), self._split(self.k_proj(k)), self._split(self.v_proj(v))
        # Fused attention: softmax(q k^T / sqrt(c)) v, 15-20% faster decoding in eager torch on CPU.
        out = F.scaled_dot_product_attention(q, k, v)
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))

    def attend_few_queries(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``forward`` for B x N x C queries (tokens) against Bk x M x C keys/values (image), Bk = 1 or B."""
        fold = self.fold_projections
        if fold is None:  # projecting k and v: Bk * M * C * I each; folded: B * heads * N * M * C each
            fold = q.shape[0] * self.num_heads * q.shape[1] < k.shape[0] * self.internal_dim
        elif fold:
            fold = k.shape[0] > 1  # a shared image is projected once
        if not fold:
            return self(q, k, v)
        heads = self.num_heads
        query = self._split(self.q_proj(q))  # B x h x N x d
        b, _, n, d = query.shape
        # q . (W_k x + b_k) = (W_k^T q) . x + q . b_k, and the last term is the same for every key: softmax drops it.
        folded_query = (query @ self._head_weights(self.k_proj)).reshape(b, heads * n, -1)  # B x hN x C
        attn = torch.softmax((folded_query @ k.transpose(1, 2)) * d**-0.5, dim=-1)  # B x hN x M
        # The weights of each query sum to 1, so averaging the inputs then projecting equals projecting first.
        mixed = (attn @ v).reshape(b, heads, n, -1)  # B x h x N x C
        out = mixed @ self._head_weights(self.v_proj).transpose(1, 2) + self.v_proj.bias.reshape(heads, 1, d)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, heads * d))

    def attend_few_keys(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``forward`` for Bq x M x C queries (image), Bq = 1 or B, against B x N x C keys/values (tokens)."""
        batch = max(q.shape[0], k.shape[0])
        few_keys = self.num_heads * k.shape[1] < self.internal_dim
        fold = self.fold_projections
        if fold is None:  # projecting q and the output: 2 * B * M * C * I; folded: 2 * B * M * C * heads * N
            # With one image shared by B > 1 prompts, projecting the image once wins (eager torch would copy it B times).
            fold_query, fold_output = q.shape[0] == batch and few_keys, few_keys
        else:
            fold_query, fold_output = fold and q.shape[0] > 1, fold
        if not fold_output:
            return self(q, k, v)
        heads = self.num_heads
        key, value = self._split(self.k_proj(k)), self._split(self.v_proj(v))  # B x h x N x d
        b, _, n, d = key.shape
        if fold_query:
            # (W_q x + b_q) . k = x . (W_q^T k) + b_q . k: the bias term differs per key and stays.
            folded_key = (key @ self._head_weights(self.q_proj)).reshape(b, heads * n, -1)  # B x hN x C
            key_bias = (key @ self.q_proj.bias.reshape(heads, d, 1)).reshape(b, 1, heads * n)
            scores = (q @ folded_key.transpose(1, 2) + key_bias).reshape(b, -1, heads, n)  # B x M x h x N
        else:  # the shared image projected once, scored against each prompt's keys
            scores = (self._split(self.q_proj(q)) @ key.transpose(2, 3)).transpose(1, 2)  # B x M x h x N
        attn = torch.softmax(scores * d**-0.5, dim=-1).reshape(b, -1, heads * n)
        # out_proj(concat_h(A_h V_h)) = sum_h A_h (V_h W_out,h): project the N values instead of the M outputs.
        # Each head's weights sum to 1, so adding bias / heads to every value adds the bias once (no pass over M x C).
        out_weight = self.out_proj.weight.reshape(-1, heads, d).permute(1, 2, 0)  # h x d x C
        projected_values = (value @ out_weight).reshape(b, heads * n, -1) + self.out_proj.bias / heads  # B x hN x C
        return attn @ projected_values


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token->image, MLP, image->token cross-attention."""

    def __init__(self, embedding_dim: int, num_heads: int, mlp_dim: int, skip_first_layer_pe: bool) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate=2)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, downsample_rate=2)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image.attend_few_queries(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))

        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token.attend_few_keys(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Decoder transformer over B x C x h x w image embeddings and B x N x C prompt tokens."""

    def __init__(self, depth: int = 2, embedding_dim: int = 256, num_heads: int = 8, mlp_dim: int = 2048) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, skip_first_layer_pe=(i == 0)) for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate=2)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def cross_attentions(self) -> list[Attention]:
        """The attentions between prompt tokens and image tokens (the ones that can fold projections)."""
        per_layer = [(layer.cross_attn_token_to_image, layer.cross_attn_image_to_token) for layer in self.layers]
        return [attention for pair in per_layer for attention in pair] + [self.final_attn_token_to_image]

    @contextlib.contextmanager
    def folding(self, fold: bool | None) -> Iterator[None]:
        """Within the block, every cross-attention folds (True), projects (False) or decides per call (None)."""
        cross = self.cross_attentions()
        before = [attention.fold_projections for attention in cross]
        for attention in cross:
            attention.fold_projections = fold
        try:
            yield
        finally:
            for attention, value in zip(cross, before, strict=True):
                attention.fold_projections = value

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image_embedding B x C x h x w, image_pe 1 x C x h x w (or already as tokens, 1 x (h*w) x C), point_embedding
        B x N x C. Returns processed tokens B x N x C and image tokens B x (h*w) x C."""
        keys = image_embedding.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1) if image_pe.dim() == 4 else image_pe
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        q, k = queries + point_embedding, keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image.attend_few_queries(q, k, keys))
        return queries, keys
