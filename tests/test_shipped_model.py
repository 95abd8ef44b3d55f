"""The shipped default model: files match the manifest, resolve with no network, and segment real nuclei."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tinysam_annotate.hashing import file_sha256
from tinysam_annotate.registry import (
    DEFAULT_MODEL,
    MODEL_SPECS,
    SHIPPED_MODELS_DIR,
    find_model_file,
    get_spec,
    shipped_onnx_dir,
)

from .conftest import DATA, ROOT, require_shared

MANIFEST = SHIPPED_MODELS_DIR / "manifest.json"


def test_manifest_matches_the_files_and_the_size_budget():
    manifest = json.loads(MANIFEST.read_text())
    entry = manifest[DEFAULT_MODEL]
    assert entry["licence"] == "Apache-2.0" and (SHIPPED_MODELS_DIR / entry["card"]).is_file()
    for f in entry["files"]:
        path = SHIPPED_MODELS_DIR / f["path"]
        assert path.stat().st_size == f["bytes"], f["path"]
        assert file_sha256(path) == f["sha256"], f["path"]
    total = sum(p.stat().st_size for p in SHIPPED_MODELS_DIR.rglob("*") if p.is_file())
    assert total < 80e6


@pytest.mark.slow
def test_the_shipped_model_loads_and_predicts_on_onnx_without_importing_torch(tmp_path):
    """The default engine (ONNX INT8) needs no torch: a user with only onnxruntime gets masks."""
    code = ("import sys, numpy as np\n"
            "from tinysam_annotate import load_model, SamPredictor\n"
            "predictor = SamPredictor(load_model('tinysam-synth', backend='onnx', precision='int8'))\n"
            "predictor.set_image(np.zeros((48, 64, 3), np.uint8))\n"
            "masks, _, _ = predictor.predict(np.array([[20, 20]]), np.array([1]))\n"
            "print(masks.shape, 'torch' in sys.modules)")
    env = {**os.environ, "TINYSAM_ANNOTATE_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["(3,", "48,", "64)", "False"]


def test_registry_resolves_the_shipped_files_without_a_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYSAM_ANNOTATE_HOME", str(tmp_path / "home"))
    spec = get_spec(DEFAULT_MODEL)
    assert find_model_file(spec) == SHIPPED_MODELS_DIR / "tinysam_synth.pth"
    assert shipped_onnx_dir(spec) == SHIPPED_MODELS_DIR / "tinysam_synth_onnx"
    from tinysam_annotate.loading import load_model

    backend = load_model(DEFAULT_MODEL, backend="onnx", precision="int8")
    assert backend.identity.precision == "int8" and "CPU" in backend.device_description
    assert not (tmp_path / "home" / "onnx").exists()  # the shipped ONNX files were used, nothing was exported


@pytest.fixture(scope="module")
def nuclei():
    import tifffile

    from tinysam_annotate.io import load_image

    image = tifffile.imread(require_shared(DATA / "nuclei_256.tif"))
    labels = tifffile.imread(DATA / "nuclei_256_mask.tif")
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    largest = ids[np.argsort(-counts)[:6]]
    return load_image(image).rgb, [labels == i for i in largest]


def _box_ious(predictor, image, masks):
    predictor.set_image(image)
    out = []
    for gt in masks:
        rows, cols = np.nonzero(gt)
        box = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], np.float32)
        pred, scores, _ = predictor.predict(box=box)
        best = pred[int(np.argmax(scores))]
        out.append((best & gt).sum() / (best | gt).sum())
    return np.array(out)


@pytest.mark.slow
def test_the_shipped_model_segments_real_nuclei_and_int8_agrees(nuclei):
    from tinysam_annotate.loading import load_model
    from tinysam_annotate.predictor import SamPredictor

    image, masks = nuclei
    fp32 = _box_ious(SamPredictor(load_model(DEFAULT_MODEL)), image, masks)
    int8 = _box_ious(SamPredictor(load_model(DEFAULT_MODEL, backend="onnx", precision="int8")), image, masks)
    assert fp32.mean() > BOX_IOU_FLOOR, fp32
    assert abs(int8.mean() - fp32.mean()) < 0.1, (fp32, int8)


BOX_IOU_FLOOR = 0.5  # the 6 largest nuclei; all 65 measure 0.43 (models/tinysam-synth.md), the large ones more


def test_the_registry_checksum_of_the_shipped_model_is_its_files():
    spec = get_spec(DEFAULT_MODEL)
    assert spec.sha256 == file_sha256(find_model_file(spec))
    onnx = load_model_quietly(DEFAULT_MODEL)
    assert onnx.identity.weights_hash == spec.sha256  # how a copy loaded by path is recognised as this model
    assert all(s.sha256 is None or len(s.sha256) == 64 for s in MODEL_SPECS.values())


def load_model_quietly(name: str):
    from tinysam_annotate.loading import load_model

    return load_model(name, backend="onnx", precision="int8")


@pytest.mark.slow
def test_a_wheel_carries_the_shipped_model_and_loads_it_in_a_fresh_venv(tmp_path):
    """pip's wheel of this checkout, installed alone into a new venv (its dependencies lent from this one), finds
    the shipped model inside the installed package and segments with it on ONNX Runtime, without torch."""
    import shutil
    import sysconfig
    from pathlib import Path

    source = tmp_path / "source"  # built out of the tree: no build/ or egg-info left in the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "runs", "*.egg-info",
                                                                "__pycache__", ".pytest_cache", ".hypothesis"))
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp_path / "dist"),
                    str(source)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("tinysam_annotate-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   capture_output=True)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "lent_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code = ("import sys, numpy as np\n"
            "import tinysam_annotate\n"
            "from tinysam_annotate import SamPredictor, load_model\n"
            "from tinysam_annotate.registry import SHIPPED_MODELS_DIR\n"
            "predictor = SamPredictor(load_model('tinysam-synth', backend='onnx', precision='int8'))\n"
            "predictor.set_image(np.zeros((48, 64, 3), np.uint8))\n"
            "masks, _, _ = predictor.predict(np.array([[20, 20]]), np.array([1]))\n"
            "print(tinysam_annotate.__file__, SHIPPED_MODELS_DIR, masks.shape[0], 'torch' in sys.modules, sep='\\n')")
    env = {**os.environ, "TINYSAM_ANNOTATE_HOME": str(tmp_path / "home")}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([str(python), "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    package_file, models_dir, n_masks, torch_loaded = done.stdout.split()
    assert Path(package_file).is_relative_to(site) and Path(models_dir) == site / "tinysam_annotate" / "models"
    assert n_masks == "3" and torch_loaded == "False"
    assert not (tmp_path / "home" / "onnx").exists()  # the packaged ONNX files were used, nothing exported
