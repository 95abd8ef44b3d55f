"""TinySAM PTQ recipe on a tiny random model: quantizers, search vs max calibration, bit widths, QDQ export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recipes.ptq.layers import QuantAttention, QuantConv, QuantLinear, quant_layers, quantize_encoder
from recipes.ptq.pipeline import calibrate, export_qdq_encoder, mask_agreement, mean_task_loss, prepare_images
from recipes.ptq.quantizers import GELU_MIN, candidates, max_scale, twin_gelu, twin_softmax, uniform
from recipes.ptq.search import PtqConfig
from tinysam_annotate.export.quantize import default_calibration_images

from ..conftest import make_tiny_sam

pytestmark = pytest.mark.slow

FAST = dict(rows_per_image=128, windows_per_image=4, prompt_grid=4)


@pytest.fixture(scope="module")
def sam():
    return make_tiny_sam(seed=3)


@pytest.fixture(scope="module")
def images(sam):
    return prepare_images(default_calibration_images(3), sam.img_size)


@pytest.fixture(scope="module")
def held_out(sam):
    return prepare_images(default_calibration_images(6)[3:5], sam.img_size)


@pytest.fixture(scope="module")
def losses(sam, images, held_out):
    """Task loss on held-out images for bits x (max calibration, search)."""
    out = {}
    for bits in (8, 6):
        for use_max in (True, False):
            q = calibrate(sam, images, PtqConfig(bits=bits, **FAST), use_max=use_max, progress=False)
            out[bits, use_max] = mean_task_loss(sam, q, held_out, prompt_grid=4)
    return out


def test_uniform_quantizer_is_symmetric_and_clamps():
    x = torch.tensor([-3.0, -0.26, 0.0, 0.24, 0.26, 5.0])
    q = uniform(x, 0.5, 3)  # levels -4..3
    assert q.tolist() == [-2.0, -0.5, 0.0, 0.0, 0.5, 1.5]
    assert max_scale(torch.tensor(1.27), 8) == pytest.approx(0.01)


def test_candidates_span_the_papers_interval():
    c = candidates(torch.tensor([2.0, 4.0]), 8)
    assert c.shape == (100, 2)
    assert torch.allclose(c[0], torch.tensor([0.01 * 2 / 128, 0.01 * 4 / 128]))
    assert torch.allclose(c[-1], torch.tensor([1.2 * 2 / 128, 1.2 * 4 / 128]))


def test_twin_uniform_beats_uniform_on_softmax_and_gelu_shapes():
    torch.manual_seed(0)
    attn = torch.randn(64, 49, 49).mul(3).softmax(-1)
    bits = 6
    err_uniform = (uniform(attn, 1 / 31, bits) - attn).abs().mean()
    err_twin = (twin_softmax(attn, 1 / 32 / 16, bits) - attn).abs().mean()
    assert err_twin < err_uniform
    assert twin_softmax(attn, 1 / 32 / 16, bits).min() >= 0 and twin_softmax(attn, 1 / 32 / 16, bits).max() <= 1
    act = torch.nn.functional.gelu(torch.randn(10000) * 2)
    assert act.min() >= GELU_MIN
    scale = act.max() / 31
    err_uniform = (uniform(act, act.abs().max() / 31, bits) - act)[act < 0].abs().mean()
    err_twin = (twin_gelu(act, scale, bits) - act)[act < 0].abs().mean()
    assert err_twin < err_uniform / 4  # negatives get their own fine grid


def test_every_encoder_layer_is_replaced_with_its_quantized_form(sam):
    q = quantize_encoder(sam.image_encoder, 8)
    kinds = {type(m) for m in quant_layers(q)}
    assert kinds == {QuantConv, QuantLinear, QuantAttention}
    assert not any(isinstance(m, torch.nn.Conv2d) for m in q.modules())
    assert isinstance(q.head, torch.nn.Linear)  # the unused classification head stays float
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():  # quantization off: BatchNorm folding keeps the float function
        assert torch.allclose(q(x), sam.image_encoder(x), atol=1e-4)


def test_search_never_does_worse_than_max_calibration(losses):
    for bits in (8, 6):
        assert losses[bits, False] <= losses[bits, True], bits


def test_fewer_bits_lose_more(losses):
    assert losses[8, False] < losses[6, False]
    assert losses[8, True] < losses[6, True]


@pytest.fixture(scope="module")
def searched_w8(sam, images):
    return calibrate(sam, images, PtqConfig(bits=8, **FAST), progress=False)


def test_searched_w8a8_keeps_the_masks(sam, searched_w8, held_out):
    assert mask_agreement(sam, searched_w8, held_out, prompt_grid=4) > 0.9


def test_qdq_export_runs_in_onnxruntime(sam, images, searched_w8, tmp_path):
    import onnx
    import onnxruntime as ort

    q = searched_w8
    path = export_qdq_encoder(q, tmp_path / "encoder.ptq.onnx")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = images[0]
    out = session.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        fp = sam.image_encoder(x).numpy()
        fake = q.image_encoder(x).numpy()
    # the deployed graph loses twin-uniform and head-wise scales, so it sits a bit further from float
    assert np.abs(out - fp).mean() < 3 * np.abs(fake - fp).mean() + 0.05
    assert np.abs(out - fp).mean() < 0.2 * np.abs(fp).mean() + 0.05
    q6 = calibrate(sam, images[:1], PtqConfig(bits=6, **FAST), use_max=True, progress=False)
    with pytest.raises(ValueError, match="int8 only"):
        export_qdq_encoder(q6, tmp_path / "six.onnx")


def test_command_line_compares_with_onnxruntime_and_installs_int8(sam, tmp_path):
    import json

    from recipes.ptq.__main__ import main

    ckpt = tmp_path / "tiny.pth"
    torch.save(sam.state_dict(), ckpt)
    main([str(ckpt), "--onnx-dir", str(tmp_path / "onnx"), "--bits", "8", "--calibration-images", "1", "--eval-images", "1",
          "--candidates", "20", "--rounds", "1", "--rows-per-image", "64", "--windows-per-image", "2", "--install",
          "--out-dir", str(tmp_path)])
    table = (tmp_path / "ptq_tiny.md").read_text()
    for row in ("max calibration", "TinySAM PTQ search", "QDQ ONNX", "quantize_static"):
        assert row in table
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    assert manifest["files"]["int8"]["encoder"] == "encoder.int8.onnx"
    assert "TinySAM PTQ" in manifest["quantization"]["int8"]["method"]
    from tinysam_annotate.backends.onnx_backend import OnnxBackend

    backend = OnnxBackend(tmp_path / "onnx", precision="int8")
    # checkpoints do not record their input size: a loaded TinyViT runs at 1024 like the official ones
    assert backend.encode(np.zeros((200, 1024, 3), np.uint8)).shape == (1, 256, 64, 64)
