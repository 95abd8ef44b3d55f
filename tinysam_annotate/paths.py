"""Where tinysam-annotate keeps its per-user data (models, embedding cache)."""

from __future__ import annotations

import os
from pathlib import Path


def app_home() -> Path:
    """``$TINYSAM_ANNOTATE_HOME``, else ``$XDG_CACHE_HOME/tinysam-annotate`` (``~/.cache/tinysam-annotate``)."""
    home = os.environ.get("TINYSAM_ANNOTATE_HOME")
    if home:
        return Path(home)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tinysam-annotate"
