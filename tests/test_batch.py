"""Batch everything mode: COCO output, label TIFFs, resume after interruption, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tinysam_annotate.backends.torch_backend import TorchBackend
from tinysam_annotate.batch import annotate_folder, annotate_image, expand_inputs
from tinysam_annotate.cli import main
from tinysam_annotate.errors import TinySamAnnotateError
from tinysam_annotate.io.coco import objects_of_image, read_coco
from tinysam_annotate.io.labels import label_image_name, read_label_image
from tinysam_annotate.service import everything_generator

from .conftest import make_tiny_sam

OPTIONS = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)


@pytest.fixture
def folder(tmp_path, scene):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.roll(scene, 10 * i, axis=1)).save(images / f"img{i}.png")
    (images / "notes.png").write_text("<html>not an image</html>")
    return images


def test_folder_to_coco_and_labels(folder, tmp_path):
    gen = everything_generator(TorchBackend(make_tiny_sam(seed=5)), "grid", output_mode="coco_rle", **OPTIONS)
    result = annotate_folder(expand_inputs([folder]), tmp_path / "out.json", gen, labels_dir=tmp_path / "labels", progress=False)
    assert sorted(result.processed) == ["img0.png", "img1.png", "img2.png"] and "notes.png" in result.failed
    coco = read_coco(tmp_path / "out.json")  # validates
    assert len(coco["images"]) == 3 and len(coco["annotations"]) == result.annotations > 0
    ann = coco["annotations"][0]
    assert ann["attributes"]["prompts"]["point_labels"] == [1] and ann["score"] >= 0
    labels = read_label_image(tmp_path / "labels" / label_image_name("img0.png"))  # the app's name too
    assert label_image_name("img0.png") == "img0_labels.tif"
    objects = objects_of_image(coco, 1)
    assert labels.shape == (120, 160) and labels.max() == len(objects)


def test_interrupted_run_resumes_with_only_missing_images(folder, tmp_path):
    gen = everything_generator(TorchBackend(make_tiny_sam(seed=5)), "hierarchical", output_mode="coco_rle", points_per_side=4)
    images = expand_inputs([folder])

    def stop_after_first(path, count):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        annotate_folder(images, tmp_path / "out.json", gen, progress=False, on_image=stop_after_first)
    assert [i["file_name"] for i in read_coco(tmp_path / "out.json")["images"]] == ["img0.png"]
    seen = []
    result = annotate_folder(images, tmp_path / "out.json", gen, progress=False, on_image=lambda p, n: seen.append(p.name))
    assert seen == ["img1.png", "img2.png"] and result.skipped == ["img0.png"]
    coco = read_coco(tmp_path / "out.json")
    assert [i["file_name"] for i in coco["images"]] == ["img0.png", "img1.png", "img2.png"]
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"])


@pytest.mark.slow
def test_cli_everything(folder, tmp_path, capsys):
    ckpt = tmp_path / "tiny.pth"
    torch.save(make_tiny_sam(seed=5).state_dict(), ckpt)
    args = ["everything", str(folder / "img0.png"), str(folder / "img1.png"), "--out", str(tmp_path / "c.json"),
            "--model", str(ckpt), "--backend", "torch", "--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
            "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 images annotated" in out and "predicted IoU >= 0.0, stability >= 0.0" in out
    assert main(args) == 0
    assert "2 already done" in capsys.readouterr().out
    assert main(["everything", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "d.json"), "--model", str(ckpt),
                 "--backend", "torch"]) == 2


def test_cli_everything_uses_the_models_tuned_thresholds(folder, tmp_path, capsys):
    """Unset thresholds come from the registry: a checkpoint path gets SAM's 0.88 / 0.95."""
    ckpt = tmp_path / "tiny.pth"
    torch.save(make_tiny_sam(seed=5).state_dict(), ckpt)
    assert main(["everything", str(folder / "img0.png"), "--out", str(tmp_path / "c.json"), "--model", str(ckpt), "--backend", "torch",
                 "--points-per-side", "4", "--no-progress"]) == 0
    assert "predicted IoU >= 0.88, stability >= 0.95" in capsys.readouterr().out


def test_duplicate_file_names_are_refused(folder, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "img0.png").write_bytes((folder / "img0.png").read_bytes())
    gen = everything_generator(TorchBackend(make_tiny_sam(seed=5)), "grid", output_mode="coco_rle", **OPTIONS)
    with pytest.raises(TinySamAnnotateError, match="img0.png"):
        annotate_folder(expand_inputs([folder, other]), tmp_path / "out.json", gen, progress=False)
    assert not (tmp_path / "out.json").exists()


def test_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        everything_generator(None, "random")


def test_one_image_shows_its_prompts_done_and_left(folder, tmp_path, monkeypatch):
    gen = everything_generator(TorchBackend(make_tiny_sam(seed=5)), "grid", output_mode="coco_rle", points_per_batch=4,
                               **OPTIONS)
    seen = []
    annotate_image(folder / "img0.png", gen, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(4 * (i + 1), 16) for i in range(4)]  # 4 x 4 grid, 4 prompts per decoder batch
    bars = []

    class RecordingBar:  # tqdm's stand-in (Gradio, imported by other tests, patches tqdm process-wide)
        def __init__(self, iterable=None, **kwargs):
            self.iterable, self.kwargs, self.total, self.n, self.closed = iterable, kwargs, kwargs.get("total"), 0, False
            bars.append(self)

        def __iter__(self):
            yield from self.iterable

        def update(self, k):
            self.n += k

        def close(self):
            self.closed = True

    monkeypatch.setattr("tinysam_annotate.batch.tqdm", RecordingBar)
    annotate_folder([folder / "img0.png"], tmp_path / "one.json", gen, progress=True)
    images, prompts = bars
    assert images.kwargs["unit"] == "image" and prompts.kwargs["unit"] == "prompt"
    assert "img0.png" in prompts.kwargs["desc"] and (prompts.n, prompts.total) == (16, 16) and prompts.closed
