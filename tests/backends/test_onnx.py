"""ONNX export and the ONNX Runtime backend: parity with torch, INT8/FP16 files, threads, memory."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from tinysam_annotate import SamPredictor, load_model
from tinysam_annotate.amg import SamAutomaticMaskGenerator
from tinysam_annotate.backends.base import ScoresFirst
from tinysam_annotate.backends.onnx_backend import OnnxBackend
from tinysam_annotate.backends.torch_backend import TorchBackend
from tinysam_annotate.build import sam_from_checkpoint
from tinysam_annotate.cache import EmbeddingCache
from tinysam_annotate.errors import ModelNotFoundError, ProviderError
from tinysam_annotate.export.onnx_export import DecoderGraph, MasksGraph, export_onnx
from tinysam_annotate.export.quantize import convert_fp16, quantize_int8
from tinysam_annotate.transforms import ResizeLongestSide

from ..conftest import CONFORMANCE, make_tiny_sam, require_shared

POINT = dict(point_coords=np.array([[50.0, 40.0]]), point_labels=np.array([1]))


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    sam = make_tiny_sam()
    folder = export_onnx(sam, tmp_path_factory.mktemp("tiny_onnx"), weights_hash="tiny", model_id="tiny")
    return sam, folder


@pytest.fixture(scope="module", params=["vit_t", "vit_small"])
def conformance_onnx(request, tmp_path_factory):
    require_shared(CONFORMANCE)
    sam = sam_from_checkpoint(CONFORMANCE / f"{request.param}.pth")
    folder = export_onnx(sam, tmp_path_factory.mktemp(request.param), weights_hash=request.param, model_id=request.param)
    return request.param, sam, folder


@pytest.mark.slow
def test_parity_with_torch_on_conformance_weights(conformance_onnx):
    name, sam, folder = conformance_onnx
    cases = json.loads((CONFORMANCE / "prompts.json").read_text())
    expected = np.load(CONFORMANCE / f"expected_{name}.npz")
    image = np.asarray(Image.open(CONFORMANCE / "image.png").convert("RGB"))
    onnx_pred = SamPredictor(OnnxBackend(folder, providers=["cpu"]), cache=EmbeddingCache(None))
    torch_pred = SamPredictor(TorchBackend(sam), cache=EmbeddingCache(None))
    onnx_pred.set_image(image)
    torch_pred.set_image(image)
    assert np.abs(onnx_pred.features - torch_pred.features).max() <= 5e-3
    for case_name, case in cases.items():
        kwargs = {k: np.array(v) for k, v in case.items() if k in ("point_coords", "point_labels", "box")}
        if "mask_input_from" in case:
            kwargs["mask_input"] = expected[f"{case['mask_input_from']}/logits_lowres"][0][None]
        m_onnx, iou_onnx, low_onnx = onnx_pred.predict(**kwargs)
        m_torch, iou_torch, low_torch = torch_pred.predict(**kwargs)
        assert np.abs(low_onnx - low_torch).max() <= 2e-2, case_name
        assert np.abs(iou_onnx - iou_torch).max() <= 1e-3, case_name
        assert (m_onnx == m_torch).mean() >= 0.999, case_name


def test_decoder_batches_and_single_mask_mode(tiny_onnx, scene):
    sam, folder = tiny_onnx
    onnx_b = OnnxBackend(folder, providers=["cpu"])
    torch_b = TorchBackend(sam)
    emb = torch_b.encode(np.ascontiguousarray(scene))
    rng = np.random.default_rng(0)
    coords = rng.uniform(0, 256, size=(7, 3, 2)).astype(np.float32)
    labels = np.array([[1, 0, -1]] * 4 + [[2, 3, 1]] * 3)
    mask = rng.normal(size=(7, 1, 64, 64)).astype(np.float32)
    for mask_input in (None, mask):
        for multimask in (True, False):
            lo, io = onnx_b.decode(emb, coords, labels, mask_input, multimask)
            lt, it = torch_b.decode(emb, coords, labels, mask_input, multimask)
            assert lo.shape == lt.shape and np.abs(lo - lt).max() < 1e-3 and np.abs(io - it).max() < 1e-4


def test_one_broadcast_no_mask_equals_one_per_prompt(tiny_onnx, scene):
    """Without mask inputs one dense embedding serves all prompts (the image-side work runs once)."""
    sam, folder = tiny_onnx
    emb = TorchBackend(sam).encode(np.ascontiguousarray(scene))
    rng = np.random.default_rng(1)
    batch = 9
    coords = rng.uniform(0, 256, size=(batch, 2, 2)).astype(np.float32)
    labels = np.array([[1, -1]] * 5 + [[2, 3]] * 4, np.float32)
    session = OnnxBackend(folder, providers=["cpu"]).decoder
    feeds = dict(image_embeddings=emb, point_coords=coords, point_labels=labels, has_mask_input=np.zeros(1, np.float32))
    one = session.run(None, dict(feeds, mask_input=np.zeros((1, 1, 64, 64), np.float32)))  # IoUs, features, weights
    per_prompt = session.run(None, dict(feeds, mask_input=np.zeros((batch, 1, 64, 64), np.float32)))
    assert one[0].shape == per_prompt[0].shape == (batch, 4) and one[1].shape[0] == batch
    assert all(np.abs(a - b).max() < 1e-4 for a, b in zip(one, per_prompt, strict=True))
    pe = sam.prompt_encoder
    with torch.inference_mode():
        sparse = pe.embed_labeled_points(torch.from_numpy(coords), torch.from_numpy(labels).long())
        args = (torch.from_numpy(emb), pe.get_dense_pe(), sparse)
        shared = sam.mask_decoder.predict_masks(*args, pe.no_mask_dense(1))
        repeated = sam.mask_decoder.predict_masks(*args, pe.no_mask_dense(batch))
    assert shared[0].shape == (batch, 4, 64, 64)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(shared, repeated, strict=True))


def _labelled_as_export_version(folder, out, version: str):
    """A copy of the exported ``folder`` at ``out`` whose manifest says ``version``: how the backend reads an older
    export's graphs (the files themselves are today's)."""
    out.mkdir()
    for file in folder.iterdir():
        (out / file.name).write_bytes(file.read_bytes())
    manifest = json.loads((folder / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps(dict(manifest, export_version=version)))
    return out


def test_folders_exported_before_mask_broadcasting_get_one_mask_per_prompt(tiny_onnx, scene, tmp_path):
    sam, folder = tiny_onnx
    old = _labelled_as_export_version(folder, tmp_path / "v2", "2")
    emb = TorchBackend(sam).encode(np.ascontiguousarray(scene))
    coords = np.array([[[30.0, 40.0]], [[100.0, 120.0]]], np.float32)
    labels = np.ones((2, 1))
    new_out = OnnxBackend(folder, providers=["cpu"]).decode(emb, coords, labels, None, True)
    old_out = OnnxBackend(old, providers=["cpu"]).decode(emb, coords, labels, None, True)
    assert np.allclose(new_out[0], old_out[0], atol=1e-4) and np.allclose(new_out[1], old_out[1], atol=1e-5)


@pytest.mark.slow
def test_export_traces_the_decoder_with_folded_cross_attention(monkeypatch, tmp_path):
    """In the traced decoder the token self-attentions and the first layer's token->image attention (the image all
    prompts share, projected once) run ``forward``; every other cross-attention folds. The model is left as it was."""
    from tinysam_annotate.modeling.transformer import Attention

    sam = make_tiny_sam()
    transformer = sam.mask_decoder.transformer
    cross = transformer.cross_attentions()
    projected = []
    original = Attention.forward
    monkeypatch.setattr(Attention, "forward", lambda self, q, k, v: projected.append(self) or original(self, q, k, v))
    export_onnx(sam, tmp_path, weights_hash="tiny", model_id="tiny", check=False)
    projected_cross = {id(a) for a in projected} & {id(c) for c in cross}
    assert projected_cross == {id(transformer.layers[0].cross_attn_token_to_image)}
    assert all(a.fold_projections is None for a in cross)


@pytest.mark.slow
def test_sam_style_decoder_honours_single_mask(tmp_path):
    sam = make_tiny_sam("vit", always_multimask=False, seed=3)
    folder = export_onnx(sam, tmp_path / "vit", weights_hash="v", model_id="v")
    backend = OnnxBackend(folder, providers=["cpu"])
    assert not backend.always_multimask
    p = SamPredictor(backend)
    p.set_image(np.zeros((40, 50, 3), np.uint8))
    masks, iou, low = p.predict(**POINT, multimask_output=False)
    assert masks.shape[0] == 1 and iou.shape == (1,)


@pytest.mark.slow
def test_int8_and_fp16_files(tiny_onnx, scene, tmp_path):
    import shutil

    import onnx

    _, src = tiny_onnx
    folder = tmp_path / "q"
    shutil.copytree(src, folder)
    quantize_int8(folder, calibration_images=[scene, scene[::-1].copy()])
    convert_fp16(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"fp32", "int8", "fp16"}
    assert manifest["quantization"]["int8"]["float_outputs"] == ["MatMul", "Gemm"]
    # INT8: the encoder and the mask upscaler (int8 Gemms), the decoder float
    assert manifest["files"]["int8"]["masks"] == "masks.int8.onnx"
    assert manifest["files"]["int8"]["decoder"] == manifest["files"]["fp32"]["decoder"]
    upscaler_ops = {node.op_type for node in onnx.load(str(folder / "masks.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Gemm"} <= upscaler_ops and "DynamicQuantizeLinear" not in upscaler_ops
    # Static activation ranges: a prompt's INT8 masks do not depend on the prompts batched with it (a dynamically
    # quantized upscaler measured its range over the whole batch).
    int8 = OnnxBackend(folder, precision="int8", providers=["cpu"])
    embedding = int8.encode(ResizeLongestSide(int8.image_size).apply_image(scene))
    coords = np.array([[[10.0, 12.0]], [[40.0, 30.0]], [[55.0, 5.0]]], np.float32)
    feeds = int8.upscaler_feeds(embedding, coords, np.ones((3, 1), np.float32))
    together = int8.masks.run(None, feeds)[0]
    alone = int8.masks.run(None, {name: value[:1] for name, value in feeds.items()})[0]
    np.testing.assert_array_equal(alone[0], together[0])
    # So everything mode gives the same masks whatever its batch size (sized from memory unless set).
    runs = [SamAutomaticMaskGenerator(int8, points_per_side=4, points_per_batch=batch, pred_iou_thresh=0.0,
                                      stability_score_thresh=0.0).generate(scene) for batch in (3, 16)]
    assert runs[0] and [a["segmentation"].tobytes() for a in runs[0]] == [a["segmentation"].tobytes() for a in runs[1]]
    outputs = {}
    for precision in ("fp32", "int8", "fp16"):
        backend = OnnxBackend(folder, precision=precision, providers=["cpu"])
        assert backend.identity.precision == precision
        p = SamPredictor(backend, cache=EmbeddingCache(None))
        p.set_image(scene)
        outputs[precision] = p.predict(**POINT, return_logits=True)[2]
    for precision in ("int8", "fp16"):
        rel = np.abs(outputs[precision] - outputs["fp32"]).mean() / np.abs(outputs["fp32"]).mean()
        assert rel < 0.25, (precision, rel)


def test_missing_precision_and_folder(tiny_onnx, tmp_path):
    _, folder = tiny_onnx
    with pytest.raises(ModelNotFoundError, match="no int8 files"):
        OnnxBackend(folder, precision="int8")
    with pytest.raises(ModelNotFoundError, match="not an exported ONNX model folder"):
        OnnxBackend(tmp_path)


def test_provider_in_use_is_reported(tiny_onnx):
    _, folder = tiny_onnx
    default = OnnxBackend(folder)
    assert default.provider == "CPUExecutionProvider" and default.fallbacks == []
    asked = OnnxBackend(folder, providers=["tensorrt", "cuda"])
    assert asked.provider == "CPUExecutionProvider"
    assert asked.fallbacks == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    assert "fallback from" in asked.device_description
    with pytest.raises(ProviderError, match="not available"):
        OnnxBackend(folder, providers=["cuda"], strict=True)


def test_one_session_shared_by_threads_equals_serial(tiny_onnx, rng):
    _, folder = tiny_onnx
    backend = OnnxBackend(folder, providers=["cpu"])
    emb = backend.encode(np.full((200, 256, 3), 90, np.uint8))
    prompts = [rng.uniform(0, 256, size=(1 + i % 3, 2, 2)).astype(np.float32) for i in range(24)]
    labels = [np.tile(np.array([[1, -1]]), (len(p), 1)) for p in prompts]
    serial = [backend.decode(emb, p, lab, None, True)[0] for p, lab in zip(prompts, labels, strict=True)]
    results: dict[int, np.ndarray] = {}

    def work(indexes: list[int]) -> None:
        for i in indexes:
            results[i] = backend.decode(emb, prompts[i], labels[i], None, True)[0]

    threads = [threading.Thread(target=work, args=(list(range(k, 24, 4)),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(24):
        assert np.array_equal(results[i], serial[i])


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


@pytest.mark.slow
def test_memory_levels_off_over_2000_decoder_runs(tiny_onnx, rng):
    _, folder = tiny_onnx
    backend = OnnxBackend(folder, providers=["cpu"])
    emb = np.asarray(rng.normal(size=(1, 256, 16, 16)), np.float32)

    def run(n: int) -> None:
        for i in range(n):
            batch, points = 1 + i % 7, 1 + (i * 5) % 11
            coords = rng.uniform(0, 256, size=(batch, points, 2)).astype(np.float32)
            backend.decode(emb, coords, np.ones((batch, points), np.int64), None, True)

    run(300)  # warm-up: arena and per-shape allocations settle
    after_warmup = _rss_mb()
    run(850)
    middle = _rss_mb()
    run(850)
    end = _rss_mb()
    assert end - middle < 15, (after_warmup, middle, end)


def test_onnx_backend_imports_no_torch():
    code = (
        "import sys; from tinysam_annotate.backends.onnx_backend import OnnxBackend; "
        "from tinysam_annotate import SamPredictor, SamHierarchicalMaskGenerator; from tinysam_annotate.io import load_image; "
        "from tinysam_annotate.batch import annotate_folder; "
        "SamPredictor.__init__; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_load_model_exports_once_and_caches(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYSAM_ANNOTATE_HOME", str(tmp_path / "home"))
    ckpt = tmp_path / "tiny.pth"
    torch.save(make_tiny_sam().state_dict(), ckpt)
    backend = load_model(ckpt, backend="onnx")
    assert backend.identity.backend == "onnx" and backend.provider == "CPUExecutionProvider"
    folder = backend.folder
    stamp = (folder / "encoder.onnx").stat().st_mtime_ns
    again = load_model(ckpt, backend="onnx")
    assert again.folder == folder and (folder / "encoder.onnx").stat().st_mtime_ns == stamp
    direct = load_model(folder, backend="onnx")
    assert direct.identity == backend.identity


def test_manifest_is_typed_validated_and_written_atomically(tmp_path):
    from tinysam_annotate.export.manifest import ManifestError, OnnxManifest
    from tinysam_annotate.registry import SHIPPED_MODELS_DIR

    shipped = OnnxManifest.read(SHIPPED_MODELS_DIR / "tinysam_synth_onnx")
    assert shipped.image_size == 1024 and "int8" in shipped.files and shipped.broadcasts_mask_input
    updated = shipped.with_files("fp16", {**shipped.files["int8"], "encoder": "encoder.fp16.onnx"}, {"method": "x"})
    updated.write(tmp_path)
    assert OnnxManifest.read(tmp_path) == updated and [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
    assert set(shipped.files) == {"int8"}  # with_files returns a new manifest
    with pytest.raises(ManifestError, match="no manifest.json"):
        OnnxManifest.read(tmp_path / "missing")
    raw = json.loads((tmp_path / "manifest.json").read_text())
    for broken, match in [({k: v for k, v in raw.items() if k != "image_size"}, "lacks image_size"),
                          (dict(raw, image_size="big"), "malformed"), (dict(raw, files={"fp32": "x"}), "malformed"),
                          (dict(raw, extra=1), "unknown fields"),
                          (dict(raw, export_version="5", files={"fp32": {"encoder": "e", "decoder": "d"}}), "needs a masks file")]:
        (tmp_path / "manifest.json").write_text(json.dumps(broken))
        with pytest.raises(ManifestError, match=match):
            OnnxManifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="JSON"):
        OnnxManifest.read(tmp_path)


def test_scores_first_equals_the_full_decode(tiny_onnx, scene):
    """Everything mode scores a batch, then upscales only the rows it keeps: the same numbers as decoding all."""
    sam, folder = tiny_onnx
    rng = np.random.default_rng(3)
    coords = rng.uniform(0, 256, size=(6, 1, 2)).astype(np.float32)
    labels = np.ones((6, 1), np.int64)
    rows = np.array([4, 0, 2])
    for backend in (OnnxBackend(folder, providers=["cpu"]), TorchBackend(sam)):
        assert isinstance(backend, ScoresFirst)
        emb = backend.encode(np.ascontiguousarray(scene))
        for multimask in (True, False):
            logits, iou = backend.decode(emb, coords, labels, None, multimask)
            scored = backend.score_prompts(emb, coords, labels, multimask)
            assert np.abs(scored.iou - iou).max() < 1e-5
            assert np.abs(scored.masks_of(rows) - logits[rows]).max() < 1e-4
            assert np.abs(scored.masks_of(np.arange(6)) - logits).max() < 1e-4
            assert np.abs(scored.masks_of(np.arange(6)[::-1]) - logits[::-1]).max() < 1e-4  # every row, reordered
            # A top-left block (everything mode's part of the frame the image covers), not on feature pixel bounds.
            block = scored.masks_of(rows, (37, 50))
            assert block.shape == (3, logits.shape[1], 37, 50)
            assert np.abs(block - logits[rows][..., :37, :50]).max() < 1e-4


def test_a_block_of_the_frame_is_decoded_alone(tiny_onnx, scene, tmp_path):
    """Over a top-left block (a non-square image's part of the frame) both engines attend to the block's feature
    pixels only: the same numbers as each other, other numbers than the whole frame's. A folder exported before
    version 8 decodes the whole frame whatever the block."""
    sam, folder = tiny_onnx
    onnx_engine, torch_engine = OnnxBackend(folder, providers=["cpu"]), TorchBackend(sam)
    emb = torch_engine.encode(np.ascontiguousarray(scene))
    rng = np.random.default_rng(4)
    coords = (rng.uniform(0, 1, size=(5, 1, 2)) * [256, 180]).astype(np.float32)
    labels = np.ones((5, 1), np.int64)
    low = onnx_engine.low_res_size
    prompts = np.arange(5)
    whole = torch_engine.score_prompts(emb, coords, labels, True)
    # A wide image's rows and a tall image's columns, not on feature-pixel bounds: the feature pixels covering them
    # are decoded.
    for block in ((low * 3 // 4 - 2, low), (low, low // 2 + 3)):
        by_onnx = onnx_engine.score_prompts(emb, coords, labels, True, block)
        by_torch = torch_engine.score_prompts(emb, coords, labels, True, block)
        assert np.abs(by_onnx.iou - by_torch.iou).max() < 1e-4
        masks = by_onnx.masks_of(prompts, block)
        assert masks.shape == (5, 3, *block)
        assert np.abs(masks - by_torch.masks_of(prompts, block)).max() < 1e-3
        assert np.abs(whole.iou - by_torch.iou).max() > 1e-3  # the padding's feature pixels were left out
        assert np.abs(whole.masks_of(prompts, block) - masks).max() > 1e-3

    older = _labelled_as_export_version(folder, tmp_path / "v7", "7")
    from_older = OnnxBackend(older, providers=["cpu"]).score_prompts(emb, coords, labels, True, block)
    assert np.abs(from_older.iou - whole.iou).max() < 1e-4
    assert np.abs(from_older.masks_of(prompts, block) - whole.masks_of(prompts, block)).max() < 1e-3


class _OneGraphDecoder(torch.nn.Module):
    """The decoder as export version 4 and older wrote it: one graph from prompts to low-res logits and IoUs."""

    def __init__(self, sam) -> None:
        super().__init__()
        self.scores, self.masks = DecoderGraph(sam), MasksGraph(sam)

    def forward(self, *inputs):
        iou, features, weights = self.scores(*inputs)
        return self.masks(features, weights), iou


def test_folders_with_one_decoder_graph_still_decode(tiny_onnx, scene, tmp_path):
    sam, folder = tiny_onnx
    old = tmp_path / "v4"
    old.mkdir()
    (old / "encoder.onnx").write_bytes((folder / "encoder.onnx").read_bytes())
    low = sam.prompt_encoder.image_embedding_size[0]
    dummy = (torch.zeros(1, 256, low, low), torch.zeros(2, 1, 2), torch.ones(2, 1), torch.zeros(1, 1, 4 * low, 4 * low),
             torch.zeros(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic, as in export_onnx
        torch.onnx.export(_OneGraphDecoder(sam).eval(), dummy, str(old / "decoder.onnx"), dynamo=False, opset_version=20,
                          input_names=["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"],
                          output_names=["low_res_masks", "iou_predictions"],
                          dynamic_axes={"point_coords": {0: "n", 1: "p"}, "point_labels": {0: "n", 1: "p"},
                                        "low_res_masks": {0: "n"}, "iou_predictions": {0: "n"}})
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(export_version="4", files={"fp32": {"encoder": "encoder.onnx", "decoder": "decoder.onnx"}})
    (old / "manifest.json").write_text(json.dumps(manifest))
    new_b, old_b = OnnxBackend(folder, providers=["cpu"]), OnnxBackend(old, providers=["cpu"])
    assert old_b.masks is None and new_b.masks is not None
    assert not old_b.scores_first and new_b.scores_first  # what everything mode sizes its batches by
    emb = new_b.encode(np.ascontiguousarray(scene))
    coords = np.array([[[30.0, 40.0]], [[100.0, 120.0]], [[200.0, 10.0]]], np.float32)
    labels = np.ones((3, 1))
    for a, b in zip(new_b.decode(emb, coords, labels, None, True), old_b.decode(emb, coords, labels, None, True),
                    strict=True):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-4
    new_scores, old_scores = new_b.score_prompts(emb, coords, labels, True), old_b.score_prompts(emb, coords, labels, True)
    assert np.abs(new_scores.iou - old_scores.iou).max() < 1e-5
    assert np.abs(new_scores.masks_of(np.array([2])) - old_scores.masks_of(np.array([2]))).max() < 1e-4


def test_everything_mode_runs_batches_concurrently_with_the_same_masks(tiny_onnx, scene):
    """On CPU the engine runs one everything-mode batch per thread at once; the masks are those of one batch at a
    time, and a click still runs on every thread."""
    from tinysam_annotate import SamHierarchicalMaskGenerator
    from tinysam_annotate.backends.base import concurrent_batches

    _, folder = tiny_onnx
    one_at_a_time, two_at_once = OnnxBackend(folder, threads=1), OnnxBackend(folder, threads=2)
    assert (concurrent_batches(one_at_a_time), concurrent_batches(two_at_once)) == (1, 2)
    options = dict(points_per_side=8, points_per_batch=3, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                   box_nms_thresh=1.0, mask_nms_thresh=None, output_mode="coco_rle")
    masks = [SamHierarchicalMaskGenerator(backend, **options).generate(scene) for backend in (one_at_a_time, two_at_once)]
    assert len(masks[0]) > 3
    assert [m["segmentation"] for m in masks[0]] == [m["segmentation"] for m in masks[1]]
    assert [m["predicted_iou"] for m in masks[0]] == [m["predicted_iou"] for m in masks[1]]
    batch_decoder, _ = two_at_once._sessions_for_batches()
    assert batch_decoder is not two_at_once.decoder  # the click's session keeps its two threads
