"""Architecture behaviour on tiny random models: resolution flexibility, flags, prompt encoding."""

from __future__ import annotations

import pytest
import torch

from tinysam_annotate.build import SamConfig, build_sam, infer_config
from tinysam_annotate.modeling import TinyViT, TinyViTConfig

from ..conftest import TINY_TINYVIT, TINY_VIT, make_tiny_sam


@pytest.mark.parametrize("img_size", [256, 512, 320])
def test_tinyvit_is_resolution_flexible(img_size):
    encoder = TinyViT(TinyViTConfig(img_size=img_size, embed_dims=(16, 32, 32, 64), depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4))).eval()
    with torch.no_grad():
        out = encoder(torch.randn(1, 3, img_size, img_size))
    assert out.shape == (1, 256, img_size // 16, img_size // 16)


def test_tinyvit_default_is_official_1024_config():
    cfg = TinyViTConfig()
    assert (cfg.img_size, cfg.embed_dims, cfg.depths, cfg.num_heads, cfg.window_sizes) == (
        1024, (64, 128, 160, 320), (2, 2, 6, 2), (2, 4, 5, 10), (7, 7, 14, 7)
    )


@pytest.mark.parametrize("encoder", ["tinyvit", "vit"])
def test_infer_config_round_trips(encoder):
    sam = make_tiny_sam(encoder)
    cfg = infer_config(sam.state_dict())
    expected = TINY_TINYVIT if encoder == "tinyvit" else TINY_VIT
    if encoder == "tinyvit":  # the input size is not recorded in TinyViT weights
        assert cfg.encoder.embed_dims == expected.embed_dims and cfg.encoder.depths == expected.depths
        assert cfg.encoder.num_heads[1:] == expected.num_heads[1:]
    else:
        assert cfg.encoder == expected


def _decode(sam, multimask_output: bool):
    with torch.no_grad():
        emb = sam.image_encoder(sam.preprocess(torch.rand(1, 3, 256, 256) * 255))
        sparse, dense = sam.prompt_encoder(points=(torch.tensor([[[100.0, 80.0]]]), torch.tensor([[1]])), boxes=None, masks=None)
        return sam.mask_decoder(emb, sam.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=multimask_output)


def test_tinysam_always_multimask_flag():
    tinysam = make_tiny_sam(always_multimask=True)
    masks, iou = _decode(tinysam, multimask_output=False)
    assert masks.shape == (1, 3, 64, 64) and iou.shape == (1, 3)
    sam_like = make_tiny_sam(always_multimask=False)
    masks, iou = _decode(sam_like, multimask_output=False)
    assert masks.shape == (1, 1, 64, 64) and iou.shape == (1, 1)
    masks, _ = _decode(sam_like, multimask_output=True)
    assert masks.shape[1] == 3


def test_unified_point_labels_equal_official_prompt_encoder():
    sam = make_tiny_sam()
    pe = sam.prompt_encoder
    points = (torch.tensor([[[10.0, 20.0], [100.0, 30.0]]]), torch.tensor([[1, 0]]))
    boxes = torch.tensor([[5.0, 6.0, 200.0, 150.0]])
    with torch.no_grad():
        for pts, bxs in ((points, None), (points, boxes), (None, boxes)):
            sparse, _ = pe(points=pts, boxes=bxs, masks=None)
            coords, labels = pe.to_labeled_points(pts, bxs)
            assert torch.equal(sparse, pe.embed_labeled_points(coords, labels))
            n_expected = (2 if pts is not None else 0) + (2 if bxs is not None else (1 if pts is not None else 0))
            assert sparse.shape == (1, n_expected, 256)


def test_sam_vit_presets_build_with_official_key_layout():
    # ViT-B is built (not run) to check its parameter layout; 91M parameters takes a moment.
    sam = build_sam(SamConfig(TINY_VIT))
    keys = set(sam.state_dict())
    assert "image_encoder.blocks.1.attn.rel_pos_h" in keys and "image_encoder.pos_embed" in keys
    assert "mask_decoder.output_hypernetworks_mlps.3.layers.2.weight" in keys
    assert not any(k.endswith("attention_bias_idxs") or k.startswith("pixel_") for k in keys)


@pytest.mark.parametrize("prompts, image_batch, tokens", [(1, 1, 7), (3, 1, 6), (3, 3, 9), (2, 2, 20)])
def test_folded_cross_attention_equals_projecting_the_image(prompts, image_batch, tokens):
    """Folding the image-side projections into the tokens reassociates products: same result, both ways round."""
    from tinysam_annotate.modeling.transformer import Attention

    torch.manual_seed(0)
    attention = Attention(64, num_heads=4, downsample_rate=2)
    token_side = torch.randn(prompts, tokens, 64)
    image_keys, image_values = torch.randn(image_batch, 300, 64), torch.randn(image_batch, 300, 64)
    with torch.no_grad():
        reference_t2i = attention(token_side, image_keys, image_values)
        reference_i2t = attention(image_keys, token_side, token_side)
        for fold in (True, False, None):
            attention.fold_projections = fold
            t2i = attention.attend_few_queries(token_side, image_keys, image_values)
            i2t = attention.attend_few_keys(image_keys, token_side, token_side)
            assert t2i.shape == reference_t2i.shape and i2t.shape == reference_i2t.shape == (prompts, 300, 64)
            torch.testing.assert_close(t2i, reference_t2i, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(i2t, reference_i2t, atol=1e-5, rtol=1e-4)


def test_folding_is_chosen_where_it_saves_work(monkeypatch):
    """One prompt against 4096 image tokens folds; 64 prompts sharing one image project the image once, and the
    image->token output projection folds into the token values either way."""
    from tinysam_annotate.modeling.transformer import Attention

    attention = Attention(256, num_heads=8, downsample_rate=2)
    projected, linear_inputs = [], []

    def record_projection(self, q, k, v):
        projected.append(q.shape)
        return q.new_zeros(max(q.shape[0], k.shape[0]), q.shape[1], 256)

    monkeypatch.setattr(Attention, "forward", record_projection)
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        getattr(attention, name).register_forward_hook(
            lambda module, args, out, name=name: linear_inputs.append((name, tuple(args[0].shape))))
    image = torch.zeros(1, 4096, 256)
    with torch.no_grad():
        attention.attend_few_queries(torch.zeros(1, 7, 256), image, image)
        attention.attend_few_keys(image, torch.zeros(1, 7, 256), torch.zeros(1, 7, 256))
        assert projected == [] and not any(shape[1] == 4096 for _, shape in linear_inputs)  # one click: all folded
        attention.attend_few_queries(torch.zeros(64, 7, 256), image, image)
        linear_inputs.clear()
        attention.attend_few_keys(image, torch.zeros(64, 7, 256), torch.zeros(64, 7, 256))
        assert [(name, shape) for name, shape in linear_inputs if shape[1] == 4096] == [("q_proj", (1, 4096, 256))]
        attention.attend_few_queries(torch.zeros(1, 40, 256), image, image)  # many clicks: 8 heads x 40 > 128
    assert projected == [torch.Size([64, 7, 256]), torch.Size([1, 40, 256])]


def test_per_pixel_upscaling_equals_the_official_output_upscaling():
    """masks_from_features (per feature pixel, one shuffle of the logits) equals SAM's nn.Sequential on B x C x h x w
    followed by the token products, sub-pixel for sub-pixel."""
    from tinysam_annotate.modeling.mask_decoder import MaskDecoder
    from tinysam_annotate.modeling.transformer import TwoWayTransformer

    torch.manual_seed(0)
    decoder = MaskDecoder(transformer_dim=64, transformer=TwoWayTransformer(depth=1, embedding_dim=64, num_heads=4,
                                                                           mlp_dim=32))
    for parameter in decoder.output_upscaling.parameters():  # the norm's defaults would hide a channel mix-up
        torch.nn.init.normal_(parameter)
    features, weights = torch.randn(2, 5, 6, 64), torch.randn(2, 3, 8)
    with torch.no_grad():
        upscaled = decoder.output_upscaling(features.permute(0, 3, 1, 2))  # B x C/8 x 4h x 4w
        reference = torch.einsum("bchw,bmc->bmhw", upscaled, weights)
        masks = decoder.masks_from_features(features, weights)
    assert masks.shape == (2, 3, 20, 24)
    torch.testing.assert_close(masks, reference, atol=1e-4, rtol=1e-4)
