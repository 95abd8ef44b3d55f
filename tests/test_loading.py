"""load_model: registry names, checkpoint paths, backend and precision choices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinysam_annotate import SamPredictor, load_model, sam_model_registry
from tinysam_annotate.backends.torch_backend import TorchBackend
from tinysam_annotate.errors import CheckpointError, ModelNotFoundError
from tinysam_annotate.registry import get_spec, require_model_file

from .conftest import make_tiny_sam


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    torch.save({"model": make_tiny_sam().state_dict()}, path)
    return path


def test_registered_model_missing_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYSAM_ANNOTATE_HOME", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="models download tinysam"):
        load_model("tinysam")


def test_registered_model_found_in_user_cache(monkeypatch, tmp_path, tiny_checkpoint):
    monkeypatch.setenv("TINYSAM_ANNOTATE_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    target = tmp_path / "models" / get_spec("tinysam").filename
    target.write_bytes(tiny_checkpoint.read_bytes())
    with pytest.raises(CheckpointError, match="shape mismatches"):  # a registered name pins the architecture
        load_model("tinysam")
    torch.save(sam_model_registry["vit_t"]().state_dict(), target)
    assert require_model_file(get_spec("tinysam")).parent == tmp_path / "models"
    backend = load_model("tinysam")
    assert backend.identity.model_id == "tinysam" and backend.always_multimask


def test_checkpoint_path_and_weights_hash(tiny_checkpoint):
    backend = load_model(tiny_checkpoint)
    assert isinstance(backend, TorchBackend) and len(backend.identity.weights_hash) == 64
    assert backend.image_size == 1024  # TinyViT checkpoints do not record a size; official models use 1024


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(backend="tensorflow"), "backend must be"),
        (dict(precision="int4"), "precision must be"),
        (dict(backend="onnx", precision="bf16"), "onnx backend runs"),
        (dict(precision="int8"), "fp32 or bf16"),
    ],
)
def test_bad_choices(tiny_checkpoint, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_model(tiny_checkpoint, **kwargs)


def test_unknown_name():
    with pytest.raises(ModelNotFoundError, match="neither a registered model"):
        load_model("no-such-model")


def test_bf16_autocast_is_close_to_fp32_and_keyed_apart(tiny_sam, scene):
    fp32 = TorchBackend(tiny_sam, model_id="tiny")
    bf16 = TorchBackend(tiny_sam, model_id="tiny", bf16=True)
    assert fp32.identity != bf16.identity and bf16.identity.precision == "bf16"
    a, b = SamPredictor(fp32), SamPredictor(bf16)
    a.set_image(scene)
    b.set_image(scene)
    assert b.features.dtype == np.float32
    rel = np.abs(a.features - b.features).mean() / np.abs(a.features).mean()
    assert rel < 0.05


def test_everything_thresholds_follow_the_model():
    from tinysam_annotate.registry import DEFAULT_MODEL, SAM_THRESHOLDS, everything_thresholds

    assert everything_thresholds(None) == everything_thresholds(DEFAULT_MODEL)
    assert everything_thresholds("tinysam-synth").pred_iou == 0.5 and everything_thresholds("tinysam-synth").stability == 0.88
    assert everything_thresholds("sam_vit_h") == SAM_THRESHOLDS == everything_thresholds("/some/checkpoint.pth")
    assert (SAM_THRESHOLDS.pred_iou, SAM_THRESHOLDS.stability) == (0.88, 0.95)


def test_torch_paths_without_pytorch_say_how_to_install_it(monkeypatch):
    """The runtime needs only onnxruntime; asking for torch without it is a clear, typed error."""
    import sys

    from tinysam_annotate.errors import TorchUnavailableError

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(TorchUnavailableError, match=r"pip install 'tinysam-annotate\[torch\]'"):
        load_model("tinysam-synth", backend="torch")


def test_a_cached_int8_folder_with_the_old_per_call_upscaler_is_quantized_again(monkeypatch, tmp_path, tiny_checkpoint):
    import json

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    monkeypatch.setenv("TINYSAM_ANNOTATE_HOME", str(tmp_path))
    folder = load_model(tiny_checkpoint, backend="onnx", precision="int8").folder
    # What exports wrote until 2026-12-01: a dynamically quantized upscaler, named so in the manifest.
    quantize_dynamic(str(folder / "masks.onnx"), str(folder / "masks.int8.onnx"), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gemm"])
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["quantization"]["int8"]["masks"] = "dynamic: int8 weights, uint8 activations quantized per call"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert load_model(tiny_checkpoint, backend="onnx", precision="int8").folder == folder
    ops = {node.op_type for node in onnx.load(str(folder / "masks.int8.onnx")).graph.node}
    assert "DynamicQuantizeLinear" not in ops and "QuantizeLinear" in ops
    assert json.loads((folder / "manifest.json").read_text())["quantization"]["int8"]["masks"].startswith("static")
