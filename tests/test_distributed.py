"""Ray engine on a local 2-CPU cluster: same COCO as the local engine, actor deaths, resumed runs, no-Ray errors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tinysam_annotate.batch import annotate_folder, expand_inputs, load_detections
from tinysam_annotate.cli import main
from tinysam_annotate.errors import TinySamAnnotateError
from tinysam_annotate.io.coco import read_coco
from tinysam_annotate.io.coco_journal import journal_path
from tinysam_annotate.service import everything_generator

from .conftest import TINY_TINYVIT, make_tiny_sam

# Ray Data's DEBUG record of its context has a formatting bug that pytest's log capture turns into an error.
os.environ.setdefault("RAY_DATA_LOG_LEVEL", "INFO")
ray = pytest.importorskip("ray")
import cloudpickle  # noqa: E402  (ships with Ray)

from tinysam_annotate import distributed  # noqa: E402
from tinysam_annotate.distributed import EngineSpec, RayOptions  # noqa: E402

pytestmark = pytest.mark.ray

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the tests package
OPTIONS = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)


class TinyLoader:
    """Builds the tiny 256-px test model from a state_dict file inside each actor."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self):
        from tinysam_annotate.backends.torch_backend import TorchBackend
        from tinysam_annotate.build import SamConfig, build_sam

        sam = build_sam(SamConfig(TINY_TINYVIT))
        sam.load_state_dict(torch.load(self.path, weights_only=True))
        return TorchBackend(sam.eval(), model_id="tiny")




class DieOnce:
    """Kills the actor process the first time it reaches ``target`` (a marker file makes it once per test)."""

    def __init__(self, target: str, marker: str) -> None:
        self.target, self.marker = target, marker

    def __call__(self, path: str) -> None:
        if path.endswith(self.target) and not os.path.exists(self.marker):
            Path(self.marker).write_text("died")
            os._exit(1)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.pth"
    torch.save(make_tiny_sam(seed=5).state_dict(), path)
    return EngineSpec(mode="hierarchical", options=OPTIONS, loader=TinyLoader(str(path)))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    for i in range(20):
        img = (rng.random((72, 96, 3)) * 60).astype(np.uint8)
        y, x = rng.integers(15, 55), rng.integers(15, 80)
        img[y - 10 : y + 10, x - 12 : x + 12] = 220
        Image.fromarray(img).save(folder / f"img{i:02d}.png")
    return expand_inputs([folder])


@pytest.fixture(scope="module")
def local_coco(spec, images, tmp_path_factory):
    torch.set_num_threads(1)  # as in each actor: identical floating-point reductions
    out = tmp_path_factory.mktemp("local") / "local.json"
    generator = everything_generator(spec.load_backend(), spec.mode, output_mode="coco_rle", **spec.options)
    annotate_folder(images, out, generator, progress=False)
    return read_coco(out)


def same_annotations(a: dict, b: dict, same_order: bool = True) -> None:
    """The same images (in the same order unless ``same_order`` is False) with the same annotations each."""
    names_a, names_b = ([i["file_name"] for i in c["images"]] for c in (a, b))
    assert names_a == names_b if same_order else sorted(names_a) == sorted(names_b)
    assert len(a["annotations"]) == len(b["annotations"]) > 0
    for name in names_a:
        per_image = [[ann for ann in c["annotations"] if ann["image_id"] == image_id_of(c, name)] for c in (a, b)]
        for x, y in zip(*per_image, strict=True):
            assert x["segmentation"] == y["segmentation"] and x["bbox"] == y["bbox"]
            assert x["score"] == pytest.approx(y["score"], abs=1e-5)


def image_id_of(coco: dict, file_name: str) -> int:
    return next(i["id"] for i in coco["images"] if i["file_name"] == file_name)


def test_ray_gives_the_local_engines_annotations(cluster, spec, images, local_coco, tmp_path):
    out = tmp_path / "ray.json"
    result = distributed.annotate_folder_ray(images, out, spec, RayOptions(num_actors=2), progress=False)
    assert sorted(result.processed) == [p.name for p in images] and not result.failed
    same_annotations(read_coco(out), local_coco)
    assert not journal_path(out).exists()


def test_killing_an_actor_loses_and_duplicates_no_image(cluster, spec, images, local_coco, tmp_path):
    out = tmp_path / "ray.json"
    fault = DieOnce("img07.png", str(tmp_path / "died"))
    result = distributed.annotate_folder_ray(images, out, spec, RayOptions(num_actors=2), progress=False, fault=fault)
    assert (tmp_path / "died").exists()  # an actor really died mid-run
    assert sorted(result.processed) == [p.name for p in images]
    coco = read_coco(out)
    assert len(coco["images"]) == 20 == len({i["file_name"] for i in coco["images"]})
    same_annotations(coco, local_coco)


def test_rerun_after_an_interrupted_run_finishes_only_the_missing_images(cluster, spec, images, local_coco, tmp_path,
                                                                         monkeypatch):
    out = tmp_path / "ray.json"
    real = distributed.run_actor_pool

    def interrupted(*args, **kwargs):
        for n, row in enumerate(real(*args, **kwargs)):
            if n == 12:
                raise KeyboardInterrupt  # Ctrl-C after 12 images reached the journal
            yield row

    monkeypatch.setattr(distributed, "run_actor_pool", interrupted)
    with pytest.raises(KeyboardInterrupt):
        distributed.annotate_folder_ray(images, out, spec, RayOptions(num_actors=2), progress=False)
    # Ctrl-C keeps what was done: the 12 finished images are in the COCO file and the journal is gone
    assert len(read_coco(out)["images"]) == 12 and not journal_path(out).exists()
    monkeypatch.setattr(distributed, "run_actor_pool", real)
    submitted = []

    def recording(options, paths, *args, **kwargs):
        submitted.extend(Path(p).name for p in paths)
        yield from real(options, paths, *args, **kwargs)

    monkeypatch.setattr(distributed, "run_actor_pool", recording)
    result = distributed.annotate_folder_ray(images, out, spec, RayOptions(num_actors=2), progress=False)
    assert len(submitted) == 8 and len(result.skipped) == 12 and sorted(result.processed) == sorted(submitted)
    same_annotations(read_coco(out), local_coco, same_order=False)  # the first run's 12, then the other 8


def test_box_prompts_from_detections_on_ray_match_local(cluster, spec, images, tmp_path):
    from tinysam_annotate.batch import annotate_boxes_folder
    from tinysam_annotate.predictor import SamPredictor

    dets = [{"file_name": p.name, "bbox": [10, 8, 40, 30], "score": 0.9, "category_id": 3} for p in images[:5]]
    dets.append({"file_name": images[0].name, "bbox": [50, 30, 20, 20], "score": 0.5, "category_id": 1})
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    detections, categories = load_detections(tmp_path / "dets.json")
    local = annotate_boxes_folder(images, detections, categories, tmp_path / "local.json",
                                  SamPredictor(spec.load_backend()), progress=False)
    remote = distributed.annotate_boxes_ray(images, detections, categories, tmp_path / "ray.json", spec,
                                            RayOptions(num_actors=2), progress=False)
    assert len(local.processed) == len(remote.processed) == 5 and len(remote.skipped) == 15
    a, b = read_coco(tmp_path / "local.json"), read_coco(tmp_path / "ray.json")
    assert len(a["annotations"]) == 6
    same_annotations(a, b)
    ann = a["annotations"][0]
    assert ann["category_id"] == 3 and ann["attributes"]["prompts"]["box"] == [10.0, 8.0, 50.0, 38.0]
    assert ann["score"] <= 0.9 and {c["id"] for c in a["categories"]} == {1, 3}


def test_embed_on_ray_fills_the_shared_cache(cluster, spec, images, tmp_path):
    from tinysam_annotate.cache import EmbeddingCache
    from tinysam_annotate.io.image import load_image
    from tinysam_annotate.predictor import SamPredictor

    status = distributed.embed_folder_ray(images[:4], tmp_path / "cache", spec, RayOptions(num_actors=2), progress=False)
    assert sorted(status.values()) == ["computed"] * 4
    predictor = SamPredictor(spec.load_backend(), cache=EmbeddingCache(tmp_path / "cache"))
    assert all(predictor.is_cached(load_image(p).rgb) for p in images[:4])


def test_detections_errors_are_clear(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps([{"image_id": 4, "bbox": [0, 0, 5, 5]}]))
    with pytest.raises(TinySamAnnotateError, match="images-json"):
        load_detections(tmp_path / "d.json")
    (tmp_path / "e.json").write_text(json.dumps([{"file_name": "a.png", "bbox": [0, 0, 0, 5]}]))
    with pytest.raises(TinySamAnnotateError, match="empty box"):
        load_detections(tmp_path / "e.json")


def test_without_ray_the_error_says_how_to_install(monkeypatch, images, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(distributed.RayUnavailableError, match=r"tinysam-annotate\[distributed\]"):
        distributed.require_ray()
    code = main(["everything", str(images[0]), "--out", str(tmp_path / "o.json"), "--engine", "ray"])
    assert code == 2 and "pip install 'tinysam-annotate[distributed]'" in capsys.readouterr().err
