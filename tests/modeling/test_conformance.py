"""Conformance with the authors' TinySAM implementation on random weights (../shared/conformance)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tinysam_annotate import SamPredictor
from tinysam_annotate.build import build_sam, infer_config, load_state_dict_strict, read_checkpoint, sam_from_checkpoint
from tinysam_annotate.modeling import TinyViTConfig, ViTConfig

from ..conftest import CONFORMANCE, require_shared

# Full-size (1024 px) random-weight models: minutes in all, so outside the fast core.
pytestmark = pytest.mark.slow

MODELS = ["vit_t", "vit_small"]


@pytest.fixture(scope="module", params=MODELS)
def conformance(request):
    require_shared(CONFORMANCE)
    name = request.param
    sam = sam_from_checkpoint(CONFORMANCE / f"{name}.pth")
    expected = np.load(CONFORMANCE / f"expected_{name}.npz")
    image = np.asarray(Image.open(CONFORMANCE / "image.png").convert("RGB"))
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    return name, sam, expected, image, predictor


def _prompt_kwargs(case: dict, expected) -> dict:
    kwargs = {}
    if "point_coords" in case:
        kwargs["point_coords"] = np.array(case["point_coords"])
        kwargs["point_labels"] = np.array(case["point_labels"])
    if "box" in case:
        kwargs["box"] = np.array(case["box"])
    if "mask_input_from" in case:
        # The reference feeds back the first of the three low-res logits of the earlier case.
        kwargs["mask_input"] = expected[f"{case['mask_input_from']}/logits_lowres"][0][None]
    return kwargs


def _expected_masks(expected, case: str) -> np.ndarray:
    shape = tuple(expected[f"{case}/masks_shape"])
    return np.unpackbits(expected[f"{case}/masks_packed"], axis=-1)[..., : shape[-1]].astype(bool)


def test_checkpoints_load_strictly_with_inferred_architecture():
    require_shared(CONFORMANCE)
    sd_t = read_checkpoint(CONFORMANCE / "vit_t.pth")
    cfg_t = infer_config(sd_t)
    assert cfg_t.encoder == TinyViTConfig() and cfg_t.always_multimask
    sd_s = read_checkpoint(CONFORMANCE / "vit_small.pth")
    cfg_s = infer_config(sd_s)
    assert cfg_s.encoder == ViTConfig(embed_dim=96, depth=2, num_heads=2, window_size=14, global_attn_indexes=(1,))
    for cfg, sd in ((cfg_t, sd_t), (cfg_s, sd_s)):
        model = build_sam(cfg)
        assert set(model.state_dict()) == set(sd)
        load_state_dict_strict(model, sd)


def test_features_from_resized_image(conformance):
    name, sam, expected, _, _ = conformance
    resized = torch.from_numpy(expected["resized_image"]).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        features = sam.image_encoder(sam.preprocess(resized)).numpy()
    assert features.shape == (1, 256, 64, 64)
    assert np.abs(features - expected["features"]).max() <= 5e-3


def test_resize_matches_reference(conformance):
    _, _, expected, image, predictor = conformance
    resized = predictor.transform.apply_image(image)
    assert resized.shape == expected["resized_image"].shape
    assert np.array_equal(resized, expected["resized_image"])


@pytest.mark.parametrize("case", ["one_point", "points_pos_neg", "box", "box_and_point", "point_with_mask_input"])
def test_prompt_cases_through_predictor(conformance, case):
    name, _, expected, image, predictor = conformance
    cases = json.loads((CONFORMANCE / "prompts.json").read_text())
    # Decode against the reference features to check the decoder alone, then against our own
    # embedding (full path from image.png, resize included).
    predictor.set_embedding(expected["features"], image.shape[:2])
    masks, iou, low_res = predictor.predict(**_prompt_kwargs(cases[case], expected), multimask_output=True)
    assert low_res.shape == (3, 256, 256) and masks.shape == (3, *image.shape[:2])
    assert np.abs(low_res - expected[f"{case}/logits_lowres"]).max() <= 2e-2
    assert np.abs(iou - expected[f"{case}/iou"]).max() <= 1e-3
    assert (masks == _expected_masks(expected, case)).mean() >= 0.999

    predictor.set_image(image)
    masks_full, _, _ = predictor.predict(**_prompt_kwargs(cases[case], expected), multimask_output=True)
    assert (masks_full == _expected_masks(expected, case)).mean() >= 0.995
