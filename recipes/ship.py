"""Copy a trained model into ``models/``: fp16 checkpoint, ONNX folder, and a manifest entry.

    python -m recipes.ship --name tinysam-synth --checkpoint runs/tinysam_synth/tinysam_synth.pth \
        --onnx-dir runs/tinysam_synth/onnx

The manifest (``models/manifest.json``) records each file's sha256 and size, the licence and the
model card, so a checkout can verify what it ships (``tests/test_shipped_model.py`` does).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

from tinysam_annotate.export.manifest import OnnxManifest
from tinysam_annotate.hashing import file_sha256
from tinysam_annotate.registry import SHIPPED_MODELS_DIR, get_spec

MANIFEST = "manifest.json"
SIZE_LIMIT_MB = 80


def file_entry(path: Path, root: Path) -> dict:
    return {"path": str(path.relative_to(root)), "sha256": file_sha256(path), "bytes": path.stat().st_size}


def ship(name: str, checkpoint: Path, onnx_dir: Path, models: Path = SHIPPED_MODELS_DIR,
         precisions: tuple[str, ...] = ("int8",)) -> dict:
    spec = get_spec(name)
    models.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint, models / spec.filename)
    target = models / spec.onnx_dir
    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    exported = OnnxManifest.read(onnx_dir)
    onnx_manifest = dataclasses.replace(
        exported,
        weights_hash=file_sha256(models / spec.filename),  # the shipped file is what loads
        model_id=name,
        # other precisions are exported from the checkpoint on first use (and cached), keeping models/ small
        files={p: f for p, f in exported.files.items() if p in precisions},
        quantization={p: q for p, q in exported.quantization.items() if p in precisions},
    )
    wanted = {f for files in onnx_manifest.files.values() for f in files.values()}
    for file in sorted(wanted):
        shutil.copyfile(onnx_dir / file, target / file)
    onnx_manifest.write(target)
    files = [models / spec.filename] + sorted(target.iterdir())
    total = sum(f.stat().st_size for f in models.rglob("*") if f.is_file())
    if total > SIZE_LIMIT_MB * 1e6:
        raise SystemExit(f"models/ would hold {total / 1e6:.1f} MB, over the {SIZE_LIMIT_MB} MB limit")
    manifest_path = models / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[name] = {
        "licence": spec.licence,
        "card": f"{name}.md",
        "architecture": spec.arch,
        "files": [file_entry(f, models) for f in files],
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest[name]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recipes.ship", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="tinysam-synth")
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--onnx-dir", required=True, type=Path)
    parser.add_argument("--precisions", nargs="+", default=["int8"], help="ONNX precisions to ship")
    args = parser.parse_args(argv)
    entry = ship(args.name, args.checkpoint, args.onnx_dir, precisions=tuple(args.precisions))
    for f in entry["files"]:
        print(f"{f['bytes'] / 1e6:8.1f} MB  {f['path']}  {f['sha256'][:16]}")


if __name__ == "__main__":
    main()
