"""Architecture behaviour on tiny random models: resolution flexibility, flags, prompt encoding."""

from __future__ import annotations

import pytest
import torch

from tinysam_annotate.build import SamConfig, build_sam, infer_config
from tinysam_annotate.modeling import TinyViT, TinyViTConfig

from .conftest import TINY_TINYVIT, TINY_VIT, make_tiny_sam


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
