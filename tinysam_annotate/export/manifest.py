"""The manifest of an exported ONNX folder, typed: one place reads, validates and (atomically) writes it.

Torch-free: the ONNX engine reads it, the exporter and the quantizers write it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError
from ..io.atomic import atomic_write
from .versions import MANIFEST_FILE


class ManifestError(ModelNotFoundError):
    """A folder is not a usable exported ONNX model: no manifest, or one with missing or malformed fields."""


@dataclass(frozen=True)
class OnnxManifest:
    """``manifest.json`` of an exported folder. ``files`` maps a precision ("fp32", "int8", "fp16") to its
    ``{"encoder": file, "decoder": file, "masks": file}`` ("masks" from export version 5 on); ``quantization``
    records how each quantized precision was made."""

    export_version: str
    model_id: str
    weights_hash: str
    image_size: int
    embedding_size: int
    low_res_size: int
    always_multimask: bool
    opset: int
    files: dict[str, dict[str, str]]
    quantization: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, folder: str | os.PathLike) -> OnnxManifest:
        """The manifest of ``folder``; ManifestError names what is missing or malformed."""
        path = Path(folder) / MANIFEST_FILE
        if not path.is_file():
            raise ManifestError(f"{folder} is not an exported ONNX model folder (no {MANIFEST_FILE})")
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ManifestError(f"{path} is not readable JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ManifestError(f"{path} must hold a JSON object")
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "manifest") -> OnnxManifest:
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(raw))
        if missing:
            raise ManifestError(f"{source} lacks {', '.join(missing)}")
        try:
            manifest = cls(
                export_version=str(raw["export_version"]), model_id=str(raw["model_id"]),
                weights_hash=str(raw["weights_hash"]), image_size=int(raw["image_size"]),
                embedding_size=int(raw["embedding_size"]), low_res_size=int(raw["low_res_size"]),
                always_multimask=bool(raw["always_multimask"]), opset=int(raw["opset"]),
                files={str(p): _file_set(f) for p, f in raw["files"].items()},
                quantization={str(p): dict(q) for p, q in raw.get("quantization", {}).items()},
            )
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ManifestError(f"{source} has a malformed field ({exc!r})") from None
        unknown = set(raw) - names
        if unknown:
            raise ManifestError(f"{source} has unknown fields {sorted(unknown)}")
        lacking = sorted(p for p, f in manifest.files.items() if manifest.splits_decoder and "masks" not in f)
        if lacking:
            raise ManifestError(f"{source}: export version {manifest.export_version} needs a masks file for {', '.join(lacking)}")
        return manifest

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if not out["quantization"]:
            del out["quantization"]
        return out

    def write(self, folder: str | os.PathLike) -> Path:
        """Write ``folder/manifest.json`` atomically (a reader never sees half a file)."""
        path = Path(folder) / MANIFEST_FILE
        with atomic_write(path, "w") as fh:
            json.dump(self.to_dict(), fh, indent=2)
        return path

    def with_files(self, precision: str, files: dict[str, str], quantization: dict[str, Any] | None = None) -> OnnxManifest:
        """This manifest with ``precision``'s files (and how they were quantized) set."""
        quant = dict(self.quantization)
        if quantization is not None:
            quant[precision] = quantization
        return dataclasses.replace(self, files={**self.files, precision: dict(files)}, quantization=quant)

    @property
    def splits_decoder(self) -> bool:
        """Export version 5 and later stop the decoder before the masks (masks.onnx makes them)."""
        return int(self.export_version) >= 5

    @property
    def upscales_blocks(self) -> bool:
        """Export version 7 and later upscale any top-left block of the mask features (masks.onnx's rows and
        columns are dynamic); version 5-6 upscale the whole e x e frame."""
        return int(self.export_version) >= 7

    @property
    def decodes_blocks(self) -> bool:
        """Export version 8 and later decode any top-left block of the embedding (the decoder's image inputs have
        dynamic rows and columns); older graphs take the whole e x e grid."""
        return int(self.export_version) >= 8

    @property
    def broadcasts_mask_input(self) -> bool:
        """Export version 3 and later take one zero mask for all prompts; older graphs need one per prompt."""
        return int(self.export_version) >= 3


def _file_set(files: dict[str, Any]) -> dict[str, str]:
    """One precision's file names: encoder and decoder, and masks when given."""
    out = {"encoder": str(files["encoder"]), "decoder": str(files["decoder"])}
    if "masks" in files:
        out["masks"] = str(files["masks"])
    return out
