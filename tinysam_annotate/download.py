"""Resumable, verified download of model files (never called at import or by tests over the network)."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .errors import DownloadError

_CHUNK = 1 << 20


def download_file(url: str, dest: str | os.PathLike, sha256: str | None = None, progress: bool = True, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest``, resuming a previous partial download (``dest.part``).

    The file appears at ``dest`` only when complete and, when ``sha256`` is known, verified.
    Raises DownloadError with the reason (offline, HTTP status, checksum mismatch).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the partial file is already complete
            return _finish(part, dest, sha256)
        raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot reach {url} ({reason}); check the network connection or download it elsewhere") from None
    with response:
        if offset and response.status != 206:  # server ignored the range: start over
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        mode = "ab" if offset else "wb"
        with open(part, mode) as fh, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name, disable=not progress
        ) as bar:
            try:
                while block := response.read(_CHUNK):
                    fh.write(block)
                    bar.update(len(block))
            except (OSError, TimeoutError) as exc:
                raise DownloadError(f"download of {url} interrupted ({exc}); run the command again to resume") from None
    if total is not None and part.stat().st_size != total:
        raise DownloadError(f"download of {url} incomplete ({part.stat().st_size} of {total} bytes); run again to resume")
    return _finish(part, dest, sha256)


def _finish(part: Path, dest: Path, sha256: str | None) -> Path:
    if sha256 is not None:
        digest = hashlib.sha256()
        with open(part, "rb") as fh:
            while block := fh.read(_CHUNK):
                digest.update(block)
        if digest.hexdigest() != sha256.lower():
            part.unlink()
            raise DownloadError(f"checksum mismatch for {dest.name}: expected {sha256}, got {digest.hexdigest()}; removed it")
    os.replace(part, dest)
    return dest
