"""``python -m recipes.ptq CHECKPOINT --onnx-dir DIR``: TinySAM's PTQ of the encoder, compared with
plain max calibration and with onnxruntime's quantize_static on the same calibration images.

Writes ``recipes/results/ptq_<name>.md``; with ``--install`` the searched QDQ encoder becomes the int8
encoder of the ONNX folder (which is exported first when it does not exist).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tinysam_annotate.build import sam_from_checkpoint
from tinysam_annotate.export.onnx_export import export_onnx
from tinysam_annotate.export.quantize import INT8_ENCODER_FILE, default_calibration_images, quantize_int8
from tinysam_annotate.export.versions import ENCODER_FILE, MANIFEST_FILE
from tinysam_annotate.hashing import file_sha256

from .pipeline import calibrate_variants, export_qdq_encoder, install_int8, prepare_images
from .search import PtqConfig, decode_all, grid_prompts, task_loss

RESULTS = Path(__file__).resolve().parents[1] / "results"
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def evaluation_images(count: int) -> list[np.ndarray]:
    """Images never used for calibration: the shared photos and nuclei, then further scikit-image images."""
    from tinysam_annotate.io.image import load_image

    images = [load_image(p).rgb for p in sorted(SHARED_DATA.glob("*.jpg"))] + (
        [load_image(SHARED_DATA / "nuclei_256.tif").rgb] if (SHARED_DATA / "nuclei_256.tif").exists() else []
    )
    extra = default_calibration_images(10)[8:]  # rocket, moon: after the 8 calibration images
    return (images + extra)[:count]


class Encoders:
    """Embeddings from torch modules or ONNX files, for one set of preprocessed images."""

    def __init__(self, images: list[torch.Tensor]) -> None:
        self.images = images

    def torch(self, encoder: torch.nn.Module) -> tuple[list[torch.Tensor], float]:
        with torch.no_grad():
            start = time.perf_counter()
            out = [encoder(x) for x in self.images]
        return out, (time.perf_counter() - start) / len(self.images)

    def onnx(self, path: Path) -> tuple[list[torch.Tensor], float]:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        session.run(None, {"image": self.images[0].numpy()})  # warm-up
        start = time.perf_counter()
        out = [torch.from_numpy(session.run(None, {"image": x.numpy()})[0]) for x in self.images]
        return out, (time.perf_counter() - start) / len(self.images)


@torch.no_grad()
def compare(sam, reference: list[torch.Tensor], candidate: list[torch.Tensor], prompt_grid: int = 8) -> tuple[float, float]:
    """(task loss, median best-mask IoU) of candidate embeddings against the float ones, through the float decoder."""
    coords, labels = grid_prompts(prompt_grid, sam.img_size)
    losses, ious = [], []
    for ref, cand in zip(reference, candidate, strict=True):
        lf, if_ = decode_all(sam, ref, coords, labels)
        lq, iq = decode_all(sam, cand, coords, labels)
        losses.append(float(task_loss(lq, iq, lf, if_)))
        a = lf[torch.arange(len(lf)), if_.argmax(1)] > 0
        b = lq[torch.arange(len(lq)), iq.argmax(1)] > 0
        union = (a | b).flatten(1).sum(1).float()
        ious.append(torch.where(union > 0, (a & b).flatten(1).sum(1) / union.clamp(min=1), torch.ones_like(union)))
    return float(np.mean(losses)), float(torch.cat(ious).median())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recipes.ptq", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--onnx-dir", required=True, help="exported ONNX folder of the checkpoint (created if missing)")
    parser.add_argument("--name", default=None)
    parser.add_argument("--bits", type=int, nargs="+", default=[8, 6])
    parser.add_argument("--calibration-images", type=int, default=8)
    parser.add_argument("--eval-images", type=int, default=6)
    parser.add_argument("--rows-per-image", type=int, default=512)
    parser.add_argument("--windows-per-image", type=int, default=16)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--install", action="store_true", help="make the searched 8-bit QDQ encoder the folder's int8 encoder")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out-dir", default=str(RESULTS), help="where ptq_<name>.md goes")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.name or Path(args.checkpoint).stem
    sam = sam_from_checkpoint(args.checkpoint).eval()
    folder = Path(args.onnx_dir)
    if not (folder / MANIFEST_FILE).exists():
        export_onnx(sam, folder, weights_hash=file_sha256(args.checkpoint), model_id=name)
    calibration = default_calibration_images(args.calibration_images)
    calib = prepare_images(calibration, sam.img_size)
    encoders = Encoders(prepare_images(evaluation_images(args.eval_images), sam.img_size))
    reference, fp_ms = encoders.torch(sam.image_encoder)
    rows = [("float (torch)", "-", 0.0, 1.0, fp_ms)]
    fp_onnx, ms = encoders.onnx(folder / ENCODER_FILE)
    rows.append(("float (ONNX Runtime)", "-", *compare(sam, reference, fp_onnx), ms))
    cfg = PtqConfig(rounds=args.rounds, n_candidates=args.candidates, rows_per_image=args.rows_per_image,
                    windows_per_image=args.windows_per_image)
    # 8-bit search last: the model it leaves behind is the one exported to QDQ ONNX
    variants = [(b, use_max) for b in sorted(args.bits, key=lambda b: b == 8) for use_max in (True, False)]
    searched_8bit = None
    start = time.perf_counter()
    for (bits, use_max), quantized in calibrate_variants(sam, calib, variants, cfg):
        seconds, start = time.perf_counter() - start, time.perf_counter()
        out, ms = encoders.torch(quantized.image_encoder)
        label = "max calibration" if use_max else "TinySAM PTQ search"
        rows.append((f"W{bits}A{bits} fake-quant, {label} ({seconds:.0f} s)", bits, *compare(sam, reference, out), ms))
        if bits == 8 and not use_max:
            searched_8bit = quantized
    with tempfile.TemporaryDirectory() as tmp:
        if searched_8bit is not None:
            qdq = export_qdq_encoder(searched_8bit, Path(tmp) / "encoder.ptq.onnx")
            out, ms = encoders.onnx(qdq)
            rows.append(("W8A8 QDQ ONNX from the search (ONNX Runtime)", 8, *compare(sam, reference, out), ms))
        ort_folder = Path(tmp) / "ort"
        shutil.copytree(folder, ort_folder)
        quantize_int8(ort_folder, calibration)
        out, ms = encoders.onnx(ort_folder / INT8_ENCODER_FILE)
        rows.append(("onnxruntime quantize_static (MinMax, QDQ, same images)", 8, *compare(sam, reference, out), ms))
        if args.install and searched_8bit is not None:
            install_int8(folder, qdq, {"method": "TinySAM PTQ (recipes/ptq): Hessian-guided scale search, W8A8 QDQ",
                                       "calibration_images": len(calibration)})
    lines = [f"# PTQ of {name}", "",
             f"Calibration: {len(calibration)} scikit-image images; evaluation: {len(encoders.images)} other images "
             "(../shared/data photos and nuclei, scikit-image); 64 grid point prompts per image through the float decoder.",
             "Task loss = KL(masks) + KL(IoUs) against the float model (lower is better).",
             f"Search: {cfg.rounds} rounds x {cfg.n_candidates} candidates, {cfg.rows_per_image} rows and "
             f"{cfg.windows_per_image} attention windows per image.", "",
             "| encoder | bits | task loss | median mask IoU vs float | encoder ms / image (CPU) |", "|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]:.5f} | {r[3]:.4f} | {1000 * r[4]:.0f} |" for r in rows]
    lines += ["", "Fake-quant timings are of the simulation in PyTorch, not of an integer engine; the first fake-quant "
              "row's time includes collecting the statistics, which all rows share."]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_md = out_dir / f"ptq_{name}.md"
    out_md.write_text("\n".join(lines) + "\n")
    print(out_md.read_text())


if __name__ == "__main__":
    main()
