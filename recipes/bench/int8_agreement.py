"""INT8 vs FP32 ONNX encoder: mask agreement on real images for point and box prompts.

For every image (../shared/data and scikit-image samples) and every prompt (a 3x3 grid of single
points, and boxes around the central region at three sizes), both engines predict three masks; the
table reports the median IoU between the INT8 and FP32 masks (all three outputs). Results go to
recipes/results/int8_agreement.md.

    python -m recipes.bench.int8_agreement --onnx-dir DIR   # a folder with fp32 and int8 files
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tinysam_annotate import SamPredictor
from tinysam_annotate.backends.onnx_backend import OnnxBackend
from tinysam_annotate.cache import EmbeddingCache
from tinysam_annotate.io import load_image

ROOT = Path(__file__).resolve().parent
SHARED_DATA = ROOT.parent.parent / "shared" / "data"


def test_images() -> dict[str, np.ndarray]:
    from skimage import data

    images = {}
    for name in ("nuclei_256.tif", "picture1.jpg", "picture2.jpg", "picture3.jpg"):
        if (SHARED_DATA / name).is_file():
            images[name] = load_image(SHARED_DATA / name).rgb
    for name in ("coins", "cell", "immunohistochemistry", "astronaut", "coffee"):
        images[f"skimage.{name}"] = load_image(getattr(data, name)()).rgb
    return images


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx-dir", type=Path, required=True)
    parser.add_argument("--label", default="", help="what weights the folder holds, for the table")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "int8_agreement.md")
    args = parser.parse_args()

    fp32 = SamPredictor(OnnxBackend(args.onnx_dir, "fp32", providers=["cpu"]), cache=EmbeddingCache(None))
    int8 = SamPredictor(OnnxBackend(args.onnx_dir, "int8", providers=["cpu"]), cache=EmbeddingCache(None))
    rows = []
    for name, rgb in test_images().items():
        fp32.set_image(rgb)
        int8.set_image(rgb)
        h, w = rgb.shape[:2]
        point_ious, box_ious = [], []
        for fy in (0.25, 0.5, 0.75):
            for fx in (0.25, 0.5, 0.75):
                kwargs = dict(point_coords=np.array([[fx * w, fy * h]]), point_labels=np.array([1]))
                a, b = fp32.predict(**kwargs)[0], int8.predict(**kwargs)[0]
                point_ious += [iou(x, y) for x, y in zip(a, b, strict=True)]
        for half in (0.1, 0.2, 0.35):
            box = np.array([(0.5 - half) * w, (0.5 - half) * h, (0.5 + half) * w, (0.5 + half) * h])
            a, b = fp32.predict(box=box)[0], int8.predict(box=box)[0]
            box_ious += [iou(x, y) for x, y in zip(a, b, strict=True)]
        rows.append((name, w, h, float(np.median(point_ious)), float(np.median(box_ious))))
        print(rows[-1])
    all_points = np.median([r[3] for r in rows])
    all_boxes = np.median([r[4] for r in rows])
    manifest_note = args.label or str(args.onnx_dir)
    lines = [
        "# INT8 vs FP32 encoder: mask agreement",
        "",
        f"Weights: {manifest_note}. ONNX Runtime CPU; the decoder is FP32 in both. IoU between the INT8 and",
        "FP32 masks, median over the three outputs of 9 point prompts (3x3 grid) and 3 centred boxes.",
        "",
        "| image | W x H | median IoU, points | median IoU, boxes |",
        "|---|---|---|---|",
    ]
    lines += [f"| {n} | {w} x {h} | {p:.3f} | {b:.3f} |" for n, w, h, p, b in rows]
    lines += [f"| **all (median of images)** | | **{all_points:.3f}** | **{all_boxes:.3f}** |"]
    lines += ["", "Written by `recipes/bench/int8_agreement.py`."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
