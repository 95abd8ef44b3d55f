"""IoU-head calibration at toy scale: what it observes, that it changes only the head, that the head improves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recipes.data.sa1b import Sa1bFolder, generate_folder
from recipes.data.scenes import SceneConfig
from recipes.distill.calibrate import PROMPT_KINDS, calibrate, jittered, main, observe
from tinysam_annotate.build import read_checkpoint, sam_from_checkpoint

from ..conftest import make_tiny_sam

pytestmark = pytest.mark.slow

HEAD = "mask_decoder.iou_prediction_head."


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibration_scenes")
    generate_folder(folder, range(5), SceneConfig(min_size=96, max_size=128, kinds={"fluorescence": 1, "coins": 1}), progress=False)
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save({k: v.half() for k, v in make_tiny_sam(seed=3).state_dict().items()}, path)
    return path


def test_observations_pair_each_prompt_with_the_true_iou_of_every_output(scenes, checkpoint):
    sam = sam_from_checkpoint(checkpoint).float()
    folder = Sa1bFolder(scenes)
    obs = observe(sam, folder, objects_per_scene=3, progress=False)
    assert obs.tokens.shape == (len(obs.true), 256)
    assert obs.true.shape[1] == 3 and float(obs.true.min()) >= 0 and float(obs.true.max()) <= 1
    assert set(np.unique(obs.scene)) == set(range(len(folder)))
    counts = np.bincount(obs.kind, minlength=len(PROMPT_KINDS))
    assert all(counts[:4] == counts[0]) and counts[0] >= len(folder)  # every object gets the four one-shot prompts
    assert 0 < counts[PROMPT_KINDS.index("click")] <= counts[0]  # a perfect answer needs no corrective click


def test_calibration_changes_only_the_head_and_lowers_its_held_back_error(scenes, checkpoint, tmp_path):
    out = tmp_path / "calibrated.pth"
    report = calibrate(checkpoint, Sa1bFolder(scenes), out, objects_per_scene=4, held_fraction=0.4, epochs=40, progress=False)
    before, after = read_checkpoint(checkpoint), read_checkpoint(out)
    assert before.keys() == after.keys()
    for name, value in before.items():
        assert after[name].dtype == value.dtype
        if not name.startswith(HEAD):
            assert torch.equal(after[name], value), name
    assert any(not torch.equal(after[n], before[n]) for n in before if n.startswith(HEAD))
    assert report["after"].mse < 0.5 * report["before"].mse  # a random head is far off; the fit is not
    assert report["after"].best_iou == pytest.approx(report["before"].best_iou)  # the masks are untouched
    sam_from_checkpoint(out)  # loads strictly


def test_jittered_boxes_stay_in_the_image():
    rng = np.random.default_rng(0)
    box = np.array([0, 0, 10, 10], dtype=np.float32)
    for _ in range(50):
        x0, y0, x1, y1 = jittered(box, rng, (12, 11))
        assert 0 <= x0 <= 11 and 0 <= x1 <= 11 and 0 <= y0 <= 12 and 0 <= y1 <= 12


def test_command_line_writes_the_checkpoint_and_the_table_and_reuses_its_observations(scenes, checkpoint, tmp_path, monkeypatch):
    out, table, kept = tmp_path / "c.pth", tmp_path / "report.md", tmp_path / "observations.pt"
    args = [str(checkpoint), "--data", str(scenes), "--scenes", "3", "--objects", "2", "--epochs", "2", "--out", str(out),
            "--report", str(table), "--observations", str(kept)]
    main(args)
    assert out.exists() and kept.exists()
    text = table.read_text()
    assert "| before |" in text and "| after |" in text and "3 scenes" in text
    first = read_checkpoint(out)

    def no_prompting(*args, **kwargs):
        raise AssertionError("the kept observations should have been reused")

    monkeypatch.setattr("recipes.distill.calibrate.observe", no_prompting)
    main(args)
    assert all(torch.equal(first[k], v) for k, v in read_checkpoint(out).items())  # same observations, same fit
    with pytest.raises(AssertionError, match="reused"):  # other scenes: the kept file does not apply
        main([*args[:4], "2", *args[5:]])

    other_weights = tmp_path / "other.pth"
    torch.save({k: v.half() for k, v in make_tiny_sam(seed=4).state_dict().items()}, other_weights)
    monkeypatch.undo()
    main([str(other_weights), *args[1:]])  # another model's observations are added to the file ...
    monkeypatch.setattr("recipes.distill.calibrate.observe", no_prompting)
    main(args)  # ... and the first model's are still there
    assert all(torch.equal(first[k], v) for k, v in read_checkpoint(out).items())
