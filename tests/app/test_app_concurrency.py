"""8 gradio_client sessions in parallel on different images: the same masks as serial runs, no shared objects."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
client_mod = pytest.importorskip("gradio_client")


from ..conftest import serve_tiny_app  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app_url():
    yield from serve_tiny_app()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(8):
        img = rng.integers(0, 60, size=(96 + 8 * i, 128, 3)).astype(np.uint8)
        img[20 : 50 + i, 30 : 70 + 2 * i] += 150
        path = folder / f"img{i}.png"
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths


def annotate(url: str, path, x: float, y: float) -> dict:
    """One user: open an image, click, accept, export; returns the exported COCO and the object table."""
    client = client_mod.Client(url, verbose=False)
    client.predict(client_mod.handle_file(str(path)), "", "tiny", "torch", "fp32", api_name="/open")
    client.predict(x, y, api_name="/click")
    client.predict("object", api_name="/accept")
    result = client.predict(api_name="/export")
    table, files = result[1], result[-1]
    coco_file = next(f for f in files if str(f).endswith(".coco.json"))
    return {"coco": json.loads(open(coco_file).read()), "table": table}


def test_parallel_sessions_match_serial_runs_and_stay_separate(app_url, images):
    jobs = [(app_url, path, 40 + i, 30 + i) for i, path in enumerate(images)]
    serial = [annotate(*job) for job in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda job: annotate(*job), jobs))
    for i, (a, b) in enumerate(zip(serial, parallel, strict=True)):
        assert len(b["coco"]["annotations"]) == 1, f"session {i} sees {len(b['coco']['annotations'])} objects"
        assert b["coco"]["images"][0]["file_name"] == f"img{i}.png"
        assert a["coco"]["annotations"][0]["segmentation"] == b["coco"]["annotations"][0]["segmentation"]
        assert len(b["table"]["data"]) == 1
