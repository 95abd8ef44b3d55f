"""``tinysam-annotate app``: the Gradio web app (the [app] extra)."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import TinySamAnnotateError
from ..registry import DEFAULT_MODEL


def add_commands(sub: Any) -> None:
    app = sub.add_parser("app", help="start the Gradio annotation app (needs the app extra: pip install tinysam-annotate[app])")
    app.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 exposes it to the network)")
    app.add_argument("--port", type=int, default=7860)
    app.add_argument("--model", default=None, help="default model (registry name or checkpoint)")
    app.add_argument("--backend", choices=["onnx", "torch"], help="default: onnx when onnxruntime is installed")
    app.add_argument("--precision", choices=["fp32", "int8"], help="default: int8 on onnx, fp32 on torch")
    app.add_argument("--max-file-size", default="25mb")
    app.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from ..app.ui import launch
    except ImportError as exc:
        raise TinySamAnnotateError(f"the app needs Gradio ({exc}); install it with: pip install 'tinysam-annotate[app]'") from None
    from ..app.engine import AppConfig
    from ..service import default_engine

    backend, precision = default_engine(args.backend)
    config = AppConfig(model=args.model or DEFAULT_MODEL, backend=backend, precision=args.precision or precision,
                       max_file_size=args.max_file_size)
    print(f"tinysam-annotate app on http://{args.host}:{args.port} (model {config.model}, {config.backend} {config.precision})")
    launch(config, host=args.host, port=args.port)
    return 0
