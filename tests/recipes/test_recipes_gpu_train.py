"""The one-call GPU training recipe, run end to end at toy scale on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from recipes.gpu_train import PART_BYTES, assemble, write_parts

from ..conftest import ROOT

pytestmark = pytest.mark.slow



def test_parts_are_small_and_join_back(tmp_path):
    data = bytes(range(256)) * (PART_BYTES // 100)
    names = write_parts(data, tmp_path, "w.pth")
    assert len(names) == 3 and all((tmp_path / n).stat().st_size <= PART_BYTES for n in names)
    import hashlib

    (tmp_path / "summary.json").write_text(json.dumps({"parts": names, "sha256": hashlib.sha256(data).hexdigest()}))
    assert assemble(tmp_path, tmp_path / "joined").read_bytes() == data
    (tmp_path / names[1]).write_bytes(b"x")
    with pytest.raises(ValueError, match="sha256"):
        assemble(tmp_path, tmp_path / "joined")


def test_tiny_gpu_recipe_runs_without_pycocotools_and_returns_loadable_weights(tmp_path):
    """The GPU host has no pycocotools: the recipe must not need it (blocked here in a subprocess)."""
    out, run = tmp_path / "out", tmp_path / "run"
    code = ("import sys; sys.modules['pycocotools'] = None\n"
            "from recipes.gpu_train import main\n"
            f"main(['--tiny', '--out', {str(out)!r}, '--run-dir', {str(run)!r}, '--minutes', '0.15', '--workers', '1',"
            " '--eval-scenes', '2', '--eval-objects', '2', '--timing-steps', '2'])")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] >= 2 and summary["images"] == 2 * summary["steps"]
    assert set(summary["eval"]) >= {"box", "point", "box_outside", "iou_r"}
    assert all((out / name).stat().st_size <= PART_BYTES for name in summary["parts"])
    weights = torch.load(assemble(out, tmp_path / "student.pth"), weights_only=True)
    assert "mask_decoder.iou_token.weight" in weights and not any(k.startswith("dense") for k in weights)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log][-1] == summary["steps"]
