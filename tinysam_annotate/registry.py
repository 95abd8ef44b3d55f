"""Named models: architecture, release URL, expected file name, checksum, licence and source.

Nothing here touches the network. Files are looked up in the shipped ``models/`` folder and in the
user cache (``$TINYSAM_ANNOTATE_HOME/models`` or ``~/.cache/tinysam-annotate/models``);
``tinysam-annotate models download NAME`` fetches the ones that have a URL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelNotFoundError
from .paths import app_home


def _shipped_models_dir() -> Path:
    """The shipped models: inside the installed package for wheel installs (package data), else ``models/`` at the
    root of a source checkout (editable installs; ``recipes/ship.py`` writes there)."""
    package = Path(__file__).resolve().parent
    packaged = package / "models"
    return packaged if (packaged / "manifest.json").is_file() else package.parent / "models"


SHIPPED_MODELS_DIR = _shipped_models_dir()


def _shipped_checksums() -> dict[str, str]:
    """{file path under the shipped folder: sha256} as ``models/manifest.json`` records them (``recipes/ship.py``
    writes it with the files, so the registry's checksum of a shipped model is never out of date)."""
    try:
        manifest = json.loads((SHIPPED_MODELS_DIR / "manifest.json").read_text())
        return {f["path"]: f["sha256"] for entry in manifest.values() for f in entry["files"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


_SHIPPED_CHECKSUMS = _shipped_checksums()


@dataclass(frozen=True)
class EverythingThresholds:
    """Everything-mode filters a model was tuned for: predicted IoU and stability score minimums."""

    pred_iou: float = 0.88
    stability: float = 0.95


SAM_THRESHOLDS = EverythingThresholds()


@dataclass(frozen=True)
class ModelSpec:
    """A named model. ``arch`` is a key of ``sam_model_registry``."""

    name: str
    arch: str
    filename: str
    url: str | None
    # The file's sha256: SAM's and MobileSAM's as published with their releases by other tools (micro-sam's
    # registry among them); the TinySAM authors publish none, so those downloads go unchecked; the shipped
    # model's comes from models/manifest.json.
    sha256: str | None
    licence: str
    source: str
    description: str
    always_multimask: bool
    onnx_dir: str | None = None  # a folder of exported ONNX files shipped next to the checkpoint
    everything: EverythingThresholds = SAM_THRESHOLDS


DEFAULT_MODEL = "tinysam-synth"


MODEL_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            DEFAULT_MODEL,
            "vit_t",
            "tinysam_synth.pth",
            None,
            _SHIPPED_CHECKSUMS.get("tinysam_synth.pth"),
            "Apache-2.0",
            "tinysam-annotate: trained by recipes/ on procedural scenes (models/tinysam-synth.md)",
            "TinySAM architecture trained from scratch on synthetic cells, nuclei, coins and shapes; the default model",
            True,
            "tinysam_synth_onnx",
            # Chosen for v4's re-fitted IoU head on calibration scenes by recipes.bench.everything_thresholds (best F1
            # within the scenes' noise, recipes/results/everything_thresholds.md); SAM's 0.88 / 0.95 keep almost nothing.
            EverythingThresholds(pred_iou=0.5, stability=0.88),
        ),
        ModelSpec(
            "tinysam",
            "vit_t",
            "tinysam.pth",
            "https://github.com/xinghaochen/TinySAM/releases/download/1.0/tinysam.pth",
            None,
            "Apache-2.0",
            "TinySAM (Shu et al., arXiv 2312.13789), first release",
            "TinySAM: TinyViT-5M encoder distilled from SAM-H (COCO AP 41.0)",
            True,
        ),
        ModelSpec(
            "tinysam-42.3",
            "vit_t",
            "tinysam_42.3.pth",
            "https://github.com/xinghaochen/TinySAM/releases/download/2.0/tinysam_42.3.pth",
            None,
            "Apache-2.0",
            "TinySAM (Shu et al., arXiv 2312.13789), second release",
            "TinySAM with improved training (COCO AP 42.3)",
            True,
        ),
        ModelSpec(
            "mobile_sam",
            "vit_t_mobile",
            "mobile_sam.pt",
            "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
            "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
            "Apache-2.0",
            "MobileSAM (Zhang et al., arXiv 2306.14289)",
            "MobileSAM: TinyViT-5M encoder distilled from SAM-H; honours multimask_output",
            False,
        ),
        ModelSpec(
            "sam_vit_b",
            "vit_b",
            "sam_vit_b_01ec64.pth",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            "Apache-2.0",
            "Segment Anything (Kirillov et al., 2023)",
            "SAM ViT-B (91M parameters)",
            False,
        ),
        ModelSpec(
            "sam_vit_l",
            "vit_l",
            "sam_vit_l_0b3195.pth",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            "Apache-2.0",
            "Segment Anything (Kirillov et al., 2023)",
            "SAM ViT-L (308M parameters)",
            False,
        ),
        ModelSpec(
            "sam_vit_h",
            "vit_h",
            "sam_vit_h_4b8939.pth",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            "Apache-2.0",
            "Segment Anything (Kirillov et al., 2023)",
            "SAM ViT-H (636M parameters), the teacher of TinySAM",
            False,
        ),
    )
}


def user_models_dir() -> Path:
    """Where downloaded models live: ``models`` under :func:`~tinysam_annotate.paths.app_home`."""
    return app_home() / "models"


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model, or a ModelNotFoundError listing the known names."""
    try:
        return MODEL_SPECS[name]
    except KeyError:
        raise ModelNotFoundError(f"unknown model {name!r}; known models: {', '.join(sorted(MODEL_SPECS))}") from None


def everything_thresholds(name: str | None) -> EverythingThresholds:
    """The everything-mode thresholds for a registered model name (None: the default model); SAM's otherwise."""
    spec = MODEL_SPECS.get(name or DEFAULT_MODEL)
    return spec.everything if spec is not None else SAM_THRESHOLDS


def spec_for_weights(model_id: str, weights_hash: str) -> ModelSpec | None:
    """The registered model an engine runs: by name (``model_id``), else by the checkpoint's sha256, so a
    registered model loaded by path (or an ONNX folder exported from it) is still recognised. None for weights
    the registry does not know."""
    if model_id in MODEL_SPECS:
        return MODEL_SPECS[model_id]
    return next((spec for spec in MODEL_SPECS.values() if spec.sha256 is not None and spec.sha256 == weights_hash), None)


def tuned_everything_thresholds(model_id: str, weights_hash: str) -> EverythingThresholds:
    """The everything-mode thresholds an engine's weights were tuned for (SAM's for unknown weights)."""
    spec = spec_for_weights(model_id, weights_hash)
    return spec.everything if spec is not None else SAM_THRESHOLDS


def find_model_file(spec: ModelSpec) -> Path | None:
    """The local file of a model (shipped folder first, then the user cache), or None."""
    for folder in (SHIPPED_MODELS_DIR, user_models_dir()):
        candidate = folder / spec.filename
        if candidate.is_file():
            return candidate
    return None


def shipped_onnx_dir(spec: ModelSpec) -> Path | None:
    """The ONNX folder shipped with a model in ``models/``, or None."""
    if spec.onnx_dir is None:
        return None
    folder = SHIPPED_MODELS_DIR / spec.onnx_dir
    return folder if (folder / "manifest.json").is_file() else None


def require_model_file(spec: ModelSpec) -> Path:
    """The local file of a model, or a ModelNotFoundError that says how to get it."""
    path = find_model_file(spec)
    if path is None:
        how = (
            f"run `tinysam-annotate models download {spec.name}` (needs a network), or place {spec.filename} in "
            f"{user_models_dir()}"
        )
        raise ModelNotFoundError(f"model {spec.name!r} is not on this machine; {how}")
    return path
