"""``tinysam-annotate models list|info|download [NAME]``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import TinySamAnnotateError
from ..registry import MODEL_SPECS, find_model_file, get_spec, user_models_dir


def add_commands(sub: Any) -> None:
    models = sub.add_parser("models", help="list, describe or download registered models")
    models.add_argument("action", choices=["list", "info", "download"])
    models.add_argument("name", nargs="?")
    models.add_argument("--dest", help="download folder (default: the user model cache)")
    models.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        for spec in MODEL_SPECS.values():
            path = find_model_file(spec)
            print(f"{spec.name:<14} {spec.arch:<13} {spec.licence:<11} {path if path else 'not downloaded'}")
        return 0
    if not args.name:
        raise TinySamAnnotateError(f"`models {args.action}` needs a model NAME")
    spec = get_spec(args.name)
    if args.action == "info":
        path = find_model_file(spec)
        for field, value in vars(spec).items():
            print(f"{field:<17} {value}")
        print(f"{'local file':<17} {path if path else 'not downloaded'}")
        return 0
    from ..download import download_file

    if spec.url is None:
        raise TinySamAnnotateError(f"model {spec.name!r} has no download URL (it ships with the package)")
    dest = Path(args.dest) if args.dest else user_models_dir()
    path = download_file(spec.url, dest / spec.filename, spec.sha256)
    print(f"saved {spec.name} to {path}")
    return 0
