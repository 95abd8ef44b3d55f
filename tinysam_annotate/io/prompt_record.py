"""The one schema of the prompts stored with each object in COCO ``attributes["prompts"]``.

Written by the web app, the CLI (``everything``, ``boxes``) and the napari plugin, read back by all three::

    "attributes": {
        "object_id": 7,                       # the object's id (its value in label images), when it has one
        "prompts": {
            "source": "click",                # click | everything | detection | import
            "points": [[x, y], ...],          # image pixels; absent when there are none
            "point_labels": [1, 0, ...],      # 1 positive, 0 negative; as many as points
            "box": [x0, y0, x1, y1],          # image pixels; absent when there is none
            "plane": [z]                      # napari: the plane of a stack the object lies in; absent in 2D
        },
        ...                                   # other fields (stability_score, detection_score) are kept as they are
    }

Files written before this schema (``point_coords`` for points, ``mode`` for the source) are read too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .coco import CocoFormatError

SOURCES = ("click", "everything", "detection", "import")


class PromptRecordError(CocoFormatError):
    """A stored prompt record is malformed (the message names the field)."""


@dataclass(frozen=True)
class PromptRecord:
    """How one object was made: its prompts in (x, y) image pixels and where they came from."""

    source: str = "click"
    points: tuple[tuple[float, float], ...] = ()
    point_labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    plane: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise PromptRecordError(f"prompt source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if len(self.points) != len(self.point_labels):
            raise PromptRecordError(f"{len(self.points)} points but {len(self.point_labels)} point labels")

    def to_json(self) -> dict[str, Any]:
        """The JSON form (plain floats and ints; empty fields left out)."""
        out: dict[str, Any] = {"source": self.source}
        if self.points:
            out["points"] = [[float(x), float(y)] for x, y in self.points]
            out["point_labels"] = [int(v) for v in self.point_labels]
        if self.box is not None:
            out["box"] = [float(v) for v in self.box]
        if self.plane is not None:
            out["plane"] = [int(v) for v in self.plane]
        return out

    @classmethod
    def from_json(cls, raw: Any) -> PromptRecord:
        """Parse a stored record (this schema or the older shapes); PromptRecordError names what is wrong."""
        if raw is None or raw == {}:
            return cls(source="import")
        if not isinstance(raw, dict):
            raise PromptRecordError(f"prompts must be an object, got {type(raw).__name__}")
        source = raw.get("source", raw.get("mode", "click"))
        if not isinstance(source, str):
            raise PromptRecordError(f"source must be a string, got {source!r:.80}")
        points = _points(raw.get("points", raw.get("point_coords", [])))
        labels = raw.get("point_labels", [1] * len(points))
        if not isinstance(labels, list) or not all(v in (0, 1) and not isinstance(v, bool) for v in labels):
            raise PromptRecordError(f"point_labels must be a list of 0 and 1, got {labels!r:.80}")
        box = None
        if raw.get("box") is not None:
            numbers = _numbers("box", raw["box"])
            if len(numbers) != 4:
                raise PromptRecordError(f"box must have 4 numbers (x0, y0, x1, y1), got {len(numbers)}")
            box = (numbers[0], numbers[1], numbers[2], numbers[3])
        plane = raw.get("plane")
        if plane is not None and (not isinstance(plane, list) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                                          for v in plane)):
            raise PromptRecordError(f"plane must be a list of integers, got {plane!r:.80}")
        return cls(source, points, tuple(int(v) for v in labels),
                   box, None if plane is None else tuple(plane))


def _numbers(name: str, value: Any) -> tuple[float, ...]:
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise PromptRecordError(f"{name} must be a list of numbers, got {value!r:.80}")
    if not all(math.isfinite(v) for v in value):
        raise PromptRecordError(f"{name} holds a non-finite number")
    return tuple(float(v) for v in value)


def _points(value: Any) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list):
        raise PromptRecordError(f"points must be a list of [x, y], got {type(value).__name__}")
    out = []
    for point in value:
        xy = _numbers("a point", point)
        if len(xy) != 2:
            raise PromptRecordError(f"a point must be [x, y], got {point!r:.80}")
        out.append((xy[0], xy[1]))
    return tuple(out)
