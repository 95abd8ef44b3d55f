"""The Gradio app builds and serves with a tiny model; the server enforces its limits."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

gr = pytest.importorskip("gradio")

from ..conftest import serve_tiny_app  # noqa: E402


@pytest.fixture(scope="module")
def server():
    yield from serve_tiny_app(max_file_size="1mb")


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


def test_page_serves_with_the_shortcut_script(server):
    code, body = _get(server + "/")
    assert code == 200 and b"tinysam-annotate" in body


@pytest.mark.parametrize("probe", ["/file=/etc/passwd", "/gradio_api/file=/etc/passwd", "/file=../../../../etc/passwd",
                                   "/gradio_api/file=..%2F..%2F..%2Fetc%2Fpasswd", "/static/../../../../etc/passwd"])
def test_file_routes_refuse_traversal(server, probe):
    code, body = _get(server + probe)
    assert 400 <= code < 500 and b"root:x:0:0" not in body


def test_oversized_upload_is_refused_before_the_app_sees_it(server):
    import httpx

    big = httpx.post(server + "/gradio_api/upload", files={"files": ("big.png", b"\x89PNG" + b"0" * 1_100_000, "image/png")})
    assert big.status_code == 413
    small = httpx.post(server + "/gradio_api/upload", files={"files": ("small.png", b"\x89PNG" + b"0" * 2000, "image/png")})
    assert small.status_code == 200
