"""Latency benchmark: encoder (torch FP32 eager vs ONNX Runtime FP32 / INT8) and decoder, side by side.

All engines run in one process on the same image, interleaved round by round so that machine noise
hits them alike; results go to recipes/results/latency.md.

    python -m recipes.bench.latency [--checkpoint PATH] [--onnx-dir DIR] [--rounds 5] [--decode-runs 200]

Without --checkpoint the conformance weights (../shared/conformance/vit_t.pth) are used when present,
else random TinySAM weights: speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tinysam_annotate import SamPredictor, sam_model_registry
from tinysam_annotate.backends.onnx_backend import OnnxBackend
from tinysam_annotate.backends.torch_backend import TorchBackend
from tinysam_annotate.cache import EmbeddingCache
from tinysam_annotate.export.onnx_export import export_onnx
from tinysam_annotate.export.quantize import quantize_int8
from tinysam_annotate.transforms import ResizeLongestSide, UpsampleFrame, postprocess_masks, preprocess_shape

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "latency.md"
CONFORMANCE = ROOT.parent.parent / "shared" / "conformance" / "vit_t.pth"

SETTLE_S = 0.5


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    ms = 1000 * np.asarray(samples)
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95)), float(ms.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--onnx-dir", type=Path, help="existing export folder (with int8 files) to reuse")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--decode-runs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    checkpoint = args.checkpoint or (CONFORMANCE if CONFORMANCE.is_file() else None)
    torch.manual_seed(0)
    sam = sam_model_registry["vit_t"](checkpoint=checkpoint)
    tmp = tempfile.TemporaryDirectory()
    folder = args.onnx_dir
    if folder is None:
        folder = export_onnx(sam, Path(tmp.name) / "onnx", weights_hash="bench", model_id="vit_t")
        quantize_int8(folder)

    from skimage import data

    image = data.astronaut()
    resized = ResizeLongestSide(1024).apply_image(image)
    engines = {
        "torch FP32 (eager)": TorchBackend(sam, model_id="vit_t"),
        "torch BF16 autocast (eager, AMX)": TorchBackend(sam, model_id="vit_t", bf16=True),
        "ORT FP32 (CPU)": OnnxBackend(folder, "fp32", providers=["cpu"]),
        "ORT INT8 (CPU)": OnnxBackend(folder, "int8", providers=["cpu"]),
    }
    for engine in engines.values():  # warm-up
        engine.encode(resized)
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(args.rounds):
        for name, engine in engines.items():
            # ORT's and OpenMP's worker threads spin for a while after a run; on 2 cores they would steal
            # time from the next engine, so each one starts on a quiet machine.
            time.sleep(SETTLE_S)
            start = time.perf_counter()
            engine.encode(resized)
            times[name].append(time.perf_counter() - start)
    base = np.median(times["torch FP32 (eager)"])

    # One click: the decoder call alone, and the whole SamPredictor.predict (prompt mapping, decoder,
    # upsampling of the three masks to the 512 x 512 original, thresholding).
    rng = np.random.default_rng(0)
    decode_rows = []
    for name in ("ORT FP32 (CPU)", "torch FP32 (eager)"):
        engine = engines[name]
        predictor = SamPredictor(engine, cache=EmbeddingCache(None))
        predictor.set_image(image)
        decoder_only, full = [], []
        for i in range(args.decode_runs + 10):
            point = rng.uniform(0, 512, size=(1, 2))
            coords = np.concatenate([point * 2.0, np.zeros((1, 2))])[None].astype(np.float32)
            start = time.perf_counter()
            engine.decode(predictor.features, coords, np.array([[1, -1]]), None, True)
            middle = time.perf_counter()
            predictor.predict(point_coords=point, point_labels=np.array([1]))
            end = time.perf_counter()
            if i >= 10:
                decoder_only.append(middle - start)
                full.append(end - middle)
        decode_rows.append((name, "decoder call (backend.decode)", *_percentiles(decoder_only)))
        decode_rows.append((name, "SamPredictor.predict, masks at 512 x 512", *_percentiles(full)))

    batch_rows = []
    embedding = engines["ORT FP32 (CPU)"].encode(resized)
    for name in ("ORT FP32 (CPU)", "torch FP32 (eager)"):
        engine = engines[name]
        coords = rng.uniform(0, 1024, size=(64, 2, 2)).astype(np.float32)
        labels = np.tile(np.array([[1, -1]]), (64, 1))
        engine.decode(embedding, coords, labels, None, True)
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            engine.decode(embedding, coords, labels, None, True)
            runs.append(time.perf_counter() - start)
        med = float(np.median(runs))
        batch_rows.append((name, 1000 * med, 64 / med))

    # Upsampling three binary masks of a small object on a 6000 x 4000 image: full matmul vs block.
    big = (4000, 6000)
    big_input = preprocess_shape(*big, 1024)
    small_object = np.full((3, 256, 256), -10.0, np.float32)
    small_object[:, 100:104, 120:124] = 5.0
    frame = UpsampleFrame.build(256, 1024, big_input, big)
    postprocess_masks(small_object, 1024, big_input, big)  # warm the matrix caches
    dense_times, block_times = [], []
    for _ in range(5):
        start = time.perf_counter()
        _ = postprocess_masks(small_object, 1024, big_input, big) > 0  # the dense path: upsample, then threshold
        dense_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        for k in range(3):
            frame.block(small_object[k], 0.0)
        block_times.append(time.perf_counter() - start)

    lines = [
        "# Latency on this machine (CPU)",
        "",
        f"TinySAM (TinyViT-5M) at 1024 px, {platform.machine()} with {torch.get_num_threads()} torch threads; "
        f"ORT {engines['ORT FP32 (CPU)'].encoder.get_session_options().intra_op_num_threads} intra-op threads. "
        f"Encoders interleaved over {args.rounds} rounds in one process after a warm-up; weights: "
        f"{'conformance (random)' if checkpoint == CONFORMANCE else (checkpoint or 'random')}.",
        "",
        "## Image encoder",
        "",
        "| engine | p50 (ms) | mean (ms) | speed-up vs torch FP32 |",
        "|---|---|---|---|",
    ]
    for name, samples in times.items():
        p50, _, mean = _percentiles(samples)
        lines.append(f"| {name} | {p50:.0f} | {mean:.0f} | {base / np.median(samples):.2f}x |")
    lines += [
        "",
        f"## One click, {args.decode_runs} clicks at random points",
        "",
        "| engine | what is timed | p50 (ms) | p95 (ms) | mean (ms) |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {name} | {what} | {p50:.1f} | {p95:.1f} | {mean:.1f} |" for name, what, p50, p95, mean in decode_rows]
    lines += ["", "## Decoder throughput, 64 prompts per run (everything mode)", ""]
    lines += ["| engine | ms per run | prompts / s |", "|---|---|---|"]
    lines += [f"| {name} | {ms:.0f} | {rate:.0f} |" for name, ms, rate in batch_rows]
    lines += [
        "",
        "## Binary masks of a small object (21,585 px) on a 6000 x 4000 image, 3 masks",
        "",
        "| method | p50 (ms) |",
        "|---|---|",
        f"| full upsampling (matmul) then threshold | {1000 * np.median(dense_times):.1f} |",
        f"| block around the mask's extent (what SamPredictor does) | {1000 * np.median(block_times):.2f} |",
    ]
    lines += ["", "Written by `recipes/bench/latency.py`."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
