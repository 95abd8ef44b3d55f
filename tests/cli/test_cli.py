"""The tinysam-annotate command and the resumable, verified downloader (against a loopback server)."""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image

from tinysam_annotate.cleanup import clean_mask, count_parts
from tinysam_annotate.cli import main
from tinysam_annotate.download import download_file
from tinysam_annotate.errors import DownloadError

from ..conftest import make_tiny_sam


def test_models_list_and_info(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("tinysam", "tinysam-42.3", "mobile_sam", "sam_vit_b", "sam_vit_l", "sam_vit_h"):
        assert name in out
    assert main(["models", "info", "tinysam"]) == 0
    out = capsys.readouterr().out
    assert "Apache-2.0" in out and "tinysam.pth" in out


def test_unknown_model_is_a_clear_error(capsys):
    assert main(["models", "info", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_segment_writes_mask_and_overlay(tmp_path, capsys):
    ckpt = tmp_path / "tiny.pth"
    torch.save(make_tiny_sam().state_dict(), ckpt)
    img = np.zeros((60, 80, 3), np.uint8)
    img[20:40, 30:50] = 200
    Image.fromarray(img).save(tmp_path / "in.png")
    code = main(
        ["segment", str(tmp_path / "in.png"), "--point", "40,30", "--point", "5,5,0", "--box", "25,15,55,45",
         "--model", str(ckpt), "--backend", "torch", "--out", str(tmp_path / "mask.png"), "--overlay", str(tmp_path / "overlay.png")]
    )
    assert code == 0, capsys.readouterr().err
    mask = np.asarray(Image.open(tmp_path / "mask.png"))
    assert mask.shape == (60, 80) and set(np.unique(mask)) <= {0, 255}
    assert np.asarray(Image.open(tmp_path / "overlay.png")).shape == (60, 80, 3)


def test_segment_cleans_the_mask_unless_the_raw_one_is_asked_for(tmp_path, capsys):
    ckpt = tmp_path / "tiny.pth"
    torch.save(make_tiny_sam().state_dict(), ckpt)
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    common = ["segment", str(tmp_path / "in.png"), "--point", "40,30", "--model", str(ckpt), "--backend", "torch"]
    assert main(common + ["--out", str(tmp_path / "raw.png"), "--raw-mask"]) == 0
    assert main(common + ["--out", str(tmp_path / "clean.png")]) == 0
    assert "cleaned from" in capsys.readouterr().out
    raw = np.asarray(Image.open(tmp_path / "raw.png")) > 0
    cleaned = np.asarray(Image.open(tmp_path / "clean.png")) > 0
    assert count_parts(raw) > count_parts(cleaned) == 1
    assert np.array_equal(cleaned, clean_mask(raw, np.array([[40.0, 30.0]]), np.array([1])))


def test_segment_bad_input_exits_2(tmp_path, capsys):
    (tmp_path / "fake.png").write_text("<html></html>")
    assert main(["segment", str(tmp_path / "fake.png"), "--point", "1,1"]) == 2
    assert "not an image" in capsys.readouterr().err


def test_segment_needs_a_prompt(tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    assert main(["segment", str(tmp_path / "a.png")]) == 2
    assert "--point" in capsys.readouterr().err


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with HTTP Range support (enough for resume tests)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.translate_path(self.path)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            self.send_error(404)
            return
        start = 0
        if "Range" in self.headers:
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def file_server(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_RangeHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_resumes_and_verifies(file_server, tmp_path):
    root, url = file_server
    payload = np.random.default_rng(0).bytes(300_000)
    (root / "model.pth").write_bytes(payload)
    dest = tmp_path / "out" / "model.pth"
    dest.parent.mkdir()
    (dest.parent / "model.pth.part").write_bytes(payload[:100_000])  # an interrupted earlier run
    sha = hashlib.sha256(payload).hexdigest()
    assert download_file(f"{url}/model.pth", dest, sha256=sha, progress=False) == dest
    assert dest.read_bytes() == payload and not (dest.parent / "model.pth.part").exists()


def test_download_checksum_mismatch_keeps_nothing(file_server, tmp_path):
    root, url = file_server
    (root / "m.pth").write_bytes(b"x" * 1000)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download_file(f"{url}/m.pth", tmp_path / "m.pth", sha256="0" * 64, progress=False)
    assert not (tmp_path / "m.pth").exists() and not (tmp_path / "m.pth.part").exists()


def test_download_http_error_and_offline(file_server, tmp_path):
    _, url = file_server
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"{url}/missing.pth", tmp_path / "x.pth", progress=False)
    with pytest.raises(DownloadError, match="cannot reach"):
        download_file("http://127.0.0.1:9/none.pth", tmp_path / "y.pth", progress=False, timeout=2)


@pytest.mark.slow
def test_export_and_quick_bench(tmp_path, capsys):
    ckpt = tmp_path / "tiny.pth"
    torch.save(make_tiny_sam().state_dict(), ckpt)
    out = tmp_path / "onnx"
    assert main(["export", str(ckpt), "--out", str(out), "--precision", "fp32", "fp16"]) == 0
    assert (out / "encoder.onnx").is_file() and (out / "decoder.fp16.onnx").is_file()
    assert main(["bench", "--quick", "--model", str(out), "--backend", "onnx", "--precision", "fp32",
                 "--providers", "cuda", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "fallback from CUDAExecutionProvider" in text and "one click p50" in text


@pytest.mark.slow
def test_strict_provider_failure_is_a_clean_error(tmp_path, capsys):
    ckpt = tmp_path / "tiny.pth"
    torch.save(make_tiny_sam().state_dict(), ckpt)
    out = tmp_path / "onnx"
    assert main(["export", str(ckpt), "--out", str(out), "--precision", "fp32"]) == 0
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    code = main(["segment", str(tmp_path / "a.png"), "--point", "2,2", "--model", str(out), "--backend", "onnx",
                 "--precision", "fp32", "--providers", "tensorrt", "--strict"])
    assert code == 2 and "not available" in capsys.readouterr().err


def test_onnx_without_a_model_is_a_clear_error_when_the_default_model_is_missing(tmp_path, capsys, monkeypatch):
    import tinysam_annotate.registry as registry

    monkeypatch.setattr(registry, "SHIPPED_MODELS_DIR", tmp_path / "no-models")
    monkeypatch.setenv("TINYSAM_ANNOTATE_HOME", str(tmp_path / "home"))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    assert main(["segment", str(tmp_path / "a.png"), "--point", "2,2", "--backend", "onnx"]) == 2
    assert "needs --model" in capsys.readouterr().err


@pytest.mark.slow
def test_the_cli_engine_defaults_to_the_apps_and_says_so(tmp_path, capsys):
    from tinysam_annotate.app.engine import AppConfig
    from tinysam_annotate.service import default_engine

    assert default_engine() == ("onnx", "int8") == (AppConfig().backend, AppConfig().precision)
    assert default_engine("torch") == ("torch", "fp32")
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[20:40, 20:40] = 220
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert main(["segment", str(tmp_path / "a.png"), "--point", "30,30", "--out", str(tmp_path / "m.png")]) == 0
    assert "(onnx int8, the default engine; --backend torch for PyTorch)" in capsys.readouterr().out
    assert main(["segment", str(tmp_path / "a.png"), "--point", "30,30", "--backend", "torch"]) == 0
    out = capsys.readouterr().out
    assert "(torch fp32)" in out and "default engine" not in out
