"""Named models: architecture, release URL, expected file name, checksum, licence and source.

Nothing here touches the network. Files are looked up in the shipped ``models/`` folder and in the
user cache (``$TINYSAM_ANNOTATE_HOME/models`` or ``~/.cache/tinysam-annotate/models``);
``tinysam-annotate models download NAME`` fetches the ones that have a URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ModelNotFoundError
from .paths import app_home

SHIPPED_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


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
            None,
            "Apache-2.0",
            "tinysam-annotate: trained by recipes/ on procedural scenes (models/tinysam-synth.md)",
            "TinySAM architecture trained from scratch on synthetic cells, nuclei, coins and shapes; the default model",
            True,
            "tinysam_synth_onnx",
            # Its predicted IoUs sit in 0.5-0.85, so SAM's 0.88 / 0.95 would keep almost nothing (model card).
            EverythingThresholds(pred_iou=0.7, stability=0.9),
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
            None,
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
            None,
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
            None,
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
            None,
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
    """The registered model an engine runs: by name (``model_id``), else by the checkpoint's sha256 (the
    registry's checksum, or the weights hash recorded in a shipped ONNX folder), so a registered model
    loaded by path is still recognised. None for weights the registry does not know."""
    if model_id in MODEL_SPECS:
        return MODEL_SPECS[model_id]
    for spec in MODEL_SPECS.values():
        if spec.sha256 is not None and spec.sha256 == weights_hash:
            return spec
        if _shipped_weights_hash(spec) == weights_hash:
            return spec
    return None


def tuned_everything_thresholds(model_id: str, weights_hash: str) -> EverythingThresholds:
    """The everything-mode thresholds an engine's weights were tuned for (SAM's for unknown weights)."""
    spec = spec_for_weights(model_id, weights_hash)
    return spec.everything if spec is not None else SAM_THRESHOLDS


def _shipped_weights_hash(spec: ModelSpec) -> str | None:
    folder = shipped_onnx_dir(spec)
    if folder is None:
        return None
    from .export.manifest import ManifestError, OnnxManifest

    try:
        return OnnxManifest.read(folder).weights_hash
    except (OSError, ManifestError):
        return None


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
