"""Write procedural scenes as an SA-1B folder: ``python -m recipes.data OUT --first 0 --count 2000``."""

from __future__ import annotations

import argparse

from .sa1b import generate_folder
from .scenes import KINDS, SceneConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recipes.data", description=__doc__)
    parser.add_argument("out", help="folder to write sa_<seed>.jpg/.json into (existing files are kept)")
    parser.add_argument("--first", type=int, default=0, help="first seed")
    parser.add_argument("--count", type=int, default=1000, help="number of scenes")
    parser.add_argument("--min-size", type=int, default=320)
    parser.add_argument("--max-size", type=int, default=640)
    parser.add_argument("--kinds", nargs="*", default=None, metavar="KIND=WEIGHT",
                        help=f"scene mix, e.g. fluorescence=0.5 coins=0.5 (kinds: {', '.join(KINDS)})")
    args = parser.parse_args(argv)
    kinds = SceneConfig().kinds if not args.kinds else {k: float(v) for k, v in (item.split("=") for item in args.kinds)}
    config = SceneConfig(min_size=args.min_size, max_size=args.max_size, kinds=kinds)
    written = generate_folder(args.out, range(args.first, args.first + args.count), config)
    print(f"wrote {written} scenes to {args.out}")


if __name__ == "__main__":
    main()
