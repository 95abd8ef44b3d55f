"""The package's module diagram (mermaid), drawn from its real imports with grimp.

    python scripts/architecture_diagram.py            # print the diagram
    python scripts/architecture_diagram.py --check ARCHITECTURE.md   # exit 1 if the file's diagram is stale
    python scripts/architecture_diagram.py --write ARCHITECTURE.md   # regenerate it in place

Nodes are the package's top-level modules and subpackages (``backends`` split into its engines); an edge
A --> B means some module of A imports some module of B at run time (imports inside functions included,
type-checking imports not). Torch-layer nodes are shaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grimp

PACKAGE = "tinysam_annotate"
SPLIT = {"backends", "export"}  # subpackages drawn one level deeper
TORCH_LAYER = {"modeling", "build", "export.onnx_export", "export.quantize", "backends.torch_backend"}
BEGIN, END = "```mermaid", "```"


def node_of(module: str) -> str | None:
    parts = module.split(".")[1:]
    if not parts:
        return None
    if parts[0] in SPLIT and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def diagram() -> str:
    graph = grimp.build_graph(PACKAGE, exclude_type_checking_imports=True)
    edges = set()
    for module in graph.modules:
        source = node_of(module)
        for imported in graph.find_modules_directly_imported_by(module):
            target = node_of(imported)
            if source and target and source != target:
                edges.add((source, target))
    nodes = sorted({n for edge in edges for n in edge})
    ident = {n: n.replace(".", "_") for n in nodes}
    lines = [BEGIN, "graph LR"]
    lines += [f"  {ident[n]}[{n}]" for n in nodes]
    lines += [f"  {ident[a]} --> {ident[b]}" for a, b in sorted(edges)]
    torch_nodes = [ident[n] for n in nodes if n in TORCH_LAYER]
    lines += ["  classDef torch fill:#f6d7c3,stroke:#a0522d", f"  class {','.join(torch_nodes)} torch", END]
    return "\n".join(lines)


def embedded(markdown: str) -> str:
    start = markdown.index(BEGIN)
    end = markdown.index(END, start + len(BEGIN))
    return markdown[start : end + len(END)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", metavar="MARKDOWN", help="compare with the diagram embedded in this file")
    parser.add_argument("--write", metavar="MARKDOWN", help="replace the diagram embedded in this file")
    args = parser.parse_args(argv)
    current = diagram()
    if args.write:
        path = Path(args.write)
        text = path.read_text()
        path.write_text(text.replace(embedded(text), current))
        return 0
    if args.check:
        if embedded(Path(args.check).read_text()) != current:
            print(f"{args.check}: the diagram is stale; regenerate it with scripts/architecture_diagram.py --write {args.check}",
                  file=sys.stderr)
            return 1
        return 0
    print(current)
    return 0


if __name__ == "__main__":
    sys.exit(main())
