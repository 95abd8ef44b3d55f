"""The package's shape: no import cycles, one service layer for engines and everything-mode generators."""

from __future__ import annotations

import grimp
import pytest

from tinysam_annotate import SamAutomaticMaskGenerator, SamHierarchicalMaskGenerator, SamPredictor, load_model
from tinysam_annotate.registry import DEFAULT_MODEL, SAM_THRESHOLDS, SHIPPED_MODELS_DIR, everything_thresholds, get_spec
from tinysam_annotate.service import everything_generator, open_engine

from .conftest import ROOT, make_tiny_sam


def test_the_package_has_no_import_cycles():
    """Runtime imports only (type-checking imports cannot cycle at run time)."""
    graph = grimp.build_graph("tinysam_annotate", exclude_type_checking_imports=True)
    cycles = sorted({tuple(sorted((a, b))) for a in graph.modules for b in graph.find_modules_directly_imported_by(a)
                     if graph.chain_exists(importer=b, imported=a)})
    assert cycles == []


def test_everything_generators_take_the_thresholds_their_model_was_tuned_for():
    shipped = open_engine(None, backend="onnx", precision="int8")  # None: the shipped default model
    tuned = everything_thresholds(shipped.identity.model_id)
    assert tuned != SAM_THRESHOLDS  # tinysam-synth's predicted IoUs sit below SAM's cut-offs
    for generator in (everything_generator(shipped), SamHierarchicalMaskGenerator(shipped),
                      SamAutomaticMaskGenerator(SamPredictor(shipped))):
        assert (generator.pred_iou_thresh, generator.stability_score_thresh) == (tuned.pred_iou, tuned.stability)
    # The shipped checkpoint loaded by path (its model id is then the file's stem) is recognised by its checksum.
    by_path = load_model(SHIPPED_MODELS_DIR / get_spec(DEFAULT_MODEL).filename, backend="torch")
    assert by_path.identity.model_id != DEFAULT_MODEL
    assert SamHierarchicalMaskGenerator(by_path).pred_iou_thresh == tuned.pred_iou
    other = everything_generator(make_tiny_sam(), "grid")  # a torch Sam the registry does not know: SAM's
    assert (other.pred_iou_thresh, other.stability_score_thresh) == (SAM_THRESHOLDS.pred_iou, SAM_THRESHOLDS.stability)
    explicit = everything_generator(shipped, pred_iou_thresh=0.5, points_per_side=8)
    assert explicit.pred_iou_thresh == 0.5 and explicit.stability_score_thresh == tuned.stability
    with pytest.raises(ValueError, match="hierarchical"):
        everything_generator(shipped, "random")


def test_the_architecture_diagram_is_current():
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "scripts/architecture_diagram.py", "--check", "ARCHITECTURE.md"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
