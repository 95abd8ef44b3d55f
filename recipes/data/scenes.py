"""Procedural scenes with exact instance masks, for training and evaluating segmenters without real data.

Every scene is drawn into an integer label map first (later objects occlude earlier ones), so the
instance masks are exact; the image is then rendered from the label map and degraded (blur, noise,
gamma, JPEG in the writer). A scene depends only on its seed.

Kinds, chosen for what users of this tool annotate:

- ``fluorescence``: dark background, bright textured nuclei / blobs in one stain colour (DAPI, GFP, ...).
- ``brightfield``: grey, unevenly lit background; cells with dark membranes and granular interiors.
- ``coins``: metallic embossed discs on a textured surface, grey (like ``skimage.data.coins``).
- ``dead_leaves``: natural-image-like occluding shapes with colours and textures (ellipses, polygons,
  rectangles, power-law sizes).
- ``objects``: a few large shaded objects on a plain or textured backdrop (simple photos).
- ``nuclei``: fluorescence nuclei as in the 2018 Data Science Bowl: mostly grey, small to medium, bright and
  dim populations, touching clusters, dividing pairs, chromatin texture, some out of focus, faint cytoplasm
  haze, shot noise.
- ``photo``: textured, shaded objects (some made of several parts) casting shadows on a cluttered, textured
  background that repeats their colours, occluding each other: a click must select one connected object.

``generate_stack`` draws 3D fluorescence stacks (ellipsoid nuclei, z blur) with 3D instance masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage import draw

KINDS = ("fluorescence", "brightfield", "coins", "dead_leaves", "objects", "nuclei", "photo")
MIN_VISIBLE_AREA = 24  # pixels; smaller visible fragments are dropped from the annotations
# The training mix: what users annotate most (nuclei, cells, photos) weighs most.
DEFAULT_MIX = {"nuclei": 0.25, "photo": 0.25, "fluorescence": 0.1, "brightfield": 0.15, "coins": 0.08,
               "dead_leaves": 0.1, "objects": 0.07}
# The mix of the scenes the first shipped model was trained and measured on (seeds keep their scenes with it).
MIX_V1 = {"fluorescence": 0.3, "brightfield": 0.2, "coins": 0.15, "dead_leaves": 0.2, "objects": 0.15}


@dataclass(frozen=True)
class SceneConfig:
    """Size range (pixels) and the mix of scene kinds (weights, normalised)."""

    min_size: int = 320
    max_size: int = 640
    kinds: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_MIX)
    )

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown scene kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
        if not 32 <= self.min_size <= self.max_size:
            raise ValueError(f"need 32 <= min_size <= max_size, got {self.min_size}, {self.max_size}")


@dataclass
class Scene:
    """An H x W x 3 uint8 image and its instance masks (N x H x W bool, visible parts only)."""

    image: np.ndarray
    masks: np.ndarray
    kind: str
    seed: int


def generate_scene(seed: int, config: SceneConfig = SceneConfig()) -> Scene:
    """The scene of ``seed``: same seed and config, same pixels and masks."""
    rng = np.random.default_rng(seed)
    names = list(config.kinds)
    weights = np.array([config.kinds[n] for n in names], dtype=float)
    kind = names[rng.choice(len(names), p=weights / weights.sum())]
    height, width = (int(v) for v in rng.integers(config.min_size, config.max_size + 1, size=2))
    image, labels = _RENDERERS[kind](rng, height, width)
    masks = _instance_masks(labels)
    return Scene(image=image, masks=masks, kind=kind, seed=seed)


def _instance_masks(labels: np.ndarray) -> np.ndarray:
    """N x ... boolean masks of the ids in ``labels`` (2D or 3D) with at least MIN_VISIBLE_AREA pixels."""
    masks = []
    for i, box in _object_boxes(labels):
        local = labels[box] == i
        if local.sum() >= MIN_VISIBLE_AREA:
            mask = np.zeros(labels.shape, dtype=bool)
            mask[box] = local
            masks.append(mask)
    return np.stack(masks) if masks else np.zeros((0,) + labels.shape, dtype=bool)


def _object_boxes(labels: np.ndarray) -> list[tuple[int, tuple[slice, ...]]]:
    """(id, bounding slices) of every id in ``labels``: per-object work then touches only its box."""
    return [(i + 1, box) for i, box in enumerate(ndimage.find_objects(labels)) if box is not None]


# ---------------------------------------------------------------------------------------------- shapes


def _star_polygon(rng: np.random.Generator, cy: float, cx: float, radius: float, roughness: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of a star-convex blob whose radius wobbles smoothly by ``roughness``."""
    n = int(rng.integers(10, 28))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    harmonics = sum(rng.normal(0, roughness / k) * np.cos(k * angles + rng.uniform(0, 2 * np.pi)) for k in range(1, 5))
    elong = rng.uniform(0.6, 1.0)
    theta = rng.uniform(0, np.pi)
    r = radius * np.clip(1 + harmonics, 0.35, 1.8)
    x, y = r * np.cos(angles), elong * r * np.sin(angles)
    rows = cy + x * np.sin(theta) + y * np.cos(theta)
    cols = cx + x * np.cos(theta) - y * np.sin(theta)
    return rows, cols


def _shape_pixels(rng: np.random.Generator, kind: str, cy: float, cx: float, size: float, shape: tuple[int, int]):
    if kind == "ellipse":
        ry, rx = size * rng.uniform(0.4, 1.0), size * rng.uniform(0.4, 1.0)
        return draw.ellipse(cy, cx, ry, rx, shape=shape, rotation=rng.uniform(0, np.pi))
    if kind == "rectangle":
        h, w = size * rng.uniform(0.5, 1.6), size * rng.uniform(0.5, 1.6)
        theta = rng.uniform(0, np.pi)
        corners = np.array([[-h, -w], [-h, w], [h, w], [h, -w]]) / 2
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        pts = corners @ rot.T + [cy, cx]
        return draw.polygon(pts[:, 0], pts[:, 1], shape=shape)
    if kind == "triangle":
        angles = rng.uniform(0, 2 * np.pi, 3)
        return draw.polygon(cy + size * np.sin(angles), cx + size * np.cos(angles), shape=shape)
    rows, cols = _star_polygon(rng, cy, cx, size, roughness=0.25 if kind == "blob" else 0.08)
    return draw.polygon(rows, cols, shape=shape)


# ---------------------------------------------------------------------------------------------- textures


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std low-frequency noise of ``shape``."""
    small = (max(2, int(shape[0] / max(sigma, 1))), max(2, int(shape[1] / max(sigma, 1))))
    noise = rng.normal(size=small)
    up = ndimage.zoom(noise, (shape[0] / small[0], shape[1] / small[1]), order=3)[: shape[0], : shape[1]]
    if up.shape != shape:
        up = np.pad(up, ((0, shape[0] - up.shape[0]), (0, shape[1] - up.shape[1])), mode="edge")
    return (up - up.mean()) / (up.std() + 1e-6)


def _texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A texture in [-1, 1]: smooth noise, stripes, a gradient or flat."""
    kind = rng.choice(["noise", "stripes", "gradient", "flat", "fine"])
    if kind == "flat":
        return np.zeros(shape)
    if kind == "noise":
        return np.tanh(_smooth_noise(rng, shape, rng.uniform(4, 30)) * 0.6)
    if kind == "fine":
        return np.tanh(_smooth_noise(rng, shape, rng.uniform(1, 3)) * 0.6)
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    theta = rng.uniform(0, np.pi)
    proj = xx * np.cos(theta) + yy * np.sin(theta)
    if kind == "gradient":
        return (proj - proj.mean()) / (np.ptp(proj) + 1e-6) * 2
    return np.sin(proj * 2 * np.pi / rng.uniform(4, 24))


def _degrade(rng: np.random.Generator, image: np.ndarray, blur: tuple[float, float], noise: tuple[float, float]) -> np.ndarray:
    """Blur, additive noise and a gamma, then quantise an H x W x 3 float image in [0, 1] to uint8."""
    sigma = rng.uniform(*blur)
    if sigma > 0.3:
        image = ndimage.gaussian_filter(image, (sigma, sigma, 0))
    image = image + rng.normal(0, rng.uniform(*noise), image.shape)
    image = np.clip(image, 0, 1) ** rng.uniform(0.7, 1.4)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray, tint: np.ndarray | None = None) -> np.ndarray:
    tint = np.ones(3) if tint is None else tint
    return gray[..., None] * tint[None, None, :]


# ---------------------------------------------------------------------------------------------- scene kinds


def _place_objects(rng, labels, count, size_fn, kinds, start_id=1, avoid_overlap=False):
    """Draw ``count`` shapes into ``labels`` (later on top); returns the ids used."""
    shape = labels.shape
    ids = []
    for i in range(count):
        size = size_fn()
        for _ in range(20 if avoid_overlap else 1):
            cy, cx = rng.uniform(-0.05, 1.05) * shape[0], rng.uniform(-0.05, 1.05) * shape[1]
            rr, cc = _shape_pixels(rng, rng.choice(kinds), cy, cx, size, shape)
            if len(rr) == 0:
                continue
            if not avoid_overlap or (labels[rr, cc] > 0).mean() < 0.05:
                break
        if len(rr) == 0:
            continue
        labels[rr, cc] = start_id + i
        ids.append(start_id + i)
    return ids


def _fluorescence(rng: np.random.Generator, h: int, w: int):
    labels = np.zeros((h, w), np.int32)
    mean_r = rng.uniform(6, 34)
    count = int(np.clip(rng.normal(0.25, 0.1) * h * w / (np.pi * mean_r**2), 3, 150))
    _place_objects(rng, labels, count, lambda: mean_r * rng.uniform(0.7, 1.3), ["blob", "ellipse", "smooth"],
                   avoid_overlap=rng.random() < 0.7)
    gray = np.full((h, w), rng.uniform(0.0, 0.12)) + 0.03 * _smooth_noise(rng, (h, w), 40)
    texture = _smooth_noise(rng, (h, w), rng.uniform(1.5, 5))
    for i in np.unique(labels)[1:]:
        m = labels == i
        dist = ndimage.distance_transform_edt(m)
        falloff = np.clip(dist / max(2.0, mean_r * rng.uniform(0.2, 0.6)), 0, 1)
        level = rng.uniform(0.25, 0.95)
        gray[m] = level * (0.55 + 0.45 * falloff[m]) * (1 + rng.uniform(0.05, 0.3) * texture[m])
    tint = rng.choice([np.array([0.3, 0.5, 1.0]), np.array([0.2, 1.0, 0.3]), np.array([1.0, 0.25, 0.2]),
                       np.array([1.0, 1.0, 1.0]), np.array([1.0, 0.2, 1.0])])
    image = _degrade(rng, _gray_to_rgb(gray, tint), blur=(0.3, 2.0), noise=(0.005, 0.05))
    return image, labels


def _brightfield(rng: np.random.Generator, h: int, w: int):
    labels = np.zeros((h, w), np.int32)
    mean_r = rng.uniform(10, 45)
    count = int(np.clip(rng.uniform(0.15, 0.5) * h * w / (np.pi * mean_r**2), 3, 80))
    _place_objects(rng, labels, count, lambda: mean_r * rng.uniform(0.6, 1.4), ["blob", "smooth", "ellipse"],
                   avoid_overlap=True)
    base = rng.uniform(0.45, 0.8)
    gray = base + 0.08 * _smooth_noise(rng, (h, w), 120) + 0.02 * _smooth_noise(rng, (h, w), 3)
    granules = _smooth_noise(rng, (h, w), 2)
    contrast = rng.choice([-1, 1]) * rng.uniform(0.05, 0.25)
    for i in np.unique(labels)[1:]:
        m = labels == i
        ring = m & ~ndimage.binary_erosion(m, iterations=int(rng.integers(1, 4)))
        gray[m] += contrast + 0.04 * granules[m]
        gray[ring] -= rng.uniform(0.1, 0.35)
    image = _degrade(rng, _gray_to_rgb(gray, np.array([1.0, rng.uniform(0.95, 1.0), rng.uniform(0.85, 1.0)])),
                     blur=(0.3, 1.5), noise=(0.005, 0.03))
    return image, labels


def _coins(rng: np.random.Generator, h: int, w: int):
    labels = np.zeros((h, w), np.int32)
    mean_r = rng.uniform(12, min(h, w) / 8)
    count = int(np.clip(rng.uniform(0.2, 0.45) * h * w / (np.pi * mean_r**2), 2, 40))
    for i in range(count):
        r = mean_r * rng.uniform(0.75, 1.25)
        for _ in range(30):
            cy, cx = rng.uniform(r, h - r), rng.uniform(r, w - r)
            rr, cc = draw.disk((cy, cx), r, shape=(h, w))
            if (labels[rr, cc] > 0).mean() < 0.01:
                labels[rr, cc] = i + 1
                break
    gray = rng.uniform(0.2, 0.6) + 0.08 * _texture(rng, (h, w)) + 0.05 * _smooth_noise(rng, (h, w), 2)
    emboss = _smooth_noise(rng, (h, w), rng.uniform(2, 6))
    yy, xx = np.mgrid[:h, :w]
    for i in np.unique(labels)[1:]:
        m = labels == i
        cy, cx = yy[m].mean(), xx[m].mean()
        light = ((yy[m] - cy) + (xx[m] - cx)) / (mean_r * 4)
        rim = m & ~ndimage.binary_erosion(m, iterations=2)
        gray[m] = rng.uniform(0.5, 0.9) - light + 0.08 * emboss[m]
        gray[rim] *= 0.7
    image = _degrade(rng, _gray_to_rgb(gray), blur=(0.3, 1.2), noise=(0.005, 0.03))
    return image, labels


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.05, 0.95, 3)


def _paint(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> None:
    colour, second = _colour(rng), _colour(rng)
    rows, cols = np.nonzero(mask)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    tex = _texture(rng, (r1 - r0, c1 - c0))
    mix = (tex[rows - r0, cols - c0] * 0.5 + 0.5)[:, None] * rng.uniform(0.1, 0.6)
    image[rows, cols] = colour * (1 - mix) + second * mix


def _dead_leaves(rng: np.random.Generator, h: int, w: int):
    labels = np.zeros((h, w), np.int32)
    image = np.empty((h, w, 3))
    _paint(rng, image, np.ones((h, w), bool))
    small, large = 6.0, min(h, w) / rng.uniform(2.5, 5)
    alpha = rng.uniform(1.5, 2.5)

    def power_law_size() -> float:
        u = rng.random()
        return (small ** (1 - alpha) + u * (large ** (1 - alpha) - small ** (1 - alpha))) ** (1 / (1 - alpha))

    ids = _place_objects(rng, labels, int(rng.integers(10, 70)), power_law_size,
                         ["ellipse", "rectangle", "triangle", "blob", "smooth"])
    for i in ids:
        m = labels == i
        if m.any():
            _paint(rng, image, m)
    return _degrade(rng, image, blur=(0.0, 1.5), noise=(0.0, 0.03)), labels


def _objects(rng: np.random.Generator, h: int, w: int):
    labels = np.zeros((h, w), np.int32)
    image = np.empty((h, w, 3))
    _paint(rng, image, np.ones((h, w), bool))
    ids = _place_objects(rng, labels, int(rng.integers(1, 7)), lambda: min(h, w) * rng.uniform(0.12, 0.35),
                         ["ellipse", "rectangle", "smooth", "blob"], avoid_overlap=rng.random() < 0.5)
    yy, xx = np.mgrid[:h, :w]
    for i in ids:
        m = labels == i
        if not m.any():
            continue
        _paint(rng, image, m)
        dist = ndimage.distance_transform_edt(m)
        shade = np.clip(dist / (dist.max() + 1e-6), 0, 1) ** 0.5
        image[m] *= (0.6 + 0.4 * shade[m])[:, None]
    return _degrade(rng, image, blur=(0.0, 1.2), noise=(0.0, 0.025)), labels


def _nuclei(rng: np.random.Generator, h: int, w: int):
    labels = np.zeros((h, w), np.int32)
    mean_r = rng.uniform(4, 22)
    count = int(np.clip(rng.uniform(0.05, 0.35) * h * w / (np.pi * mean_r**2), 3, 250))
    centres: list[tuple[float, float, float]] = []
    for _ in range(count):
        r = mean_r * rng.uniform(0.65, 1.35)
        if centres and rng.random() < 0.35:  # touch a neighbour: a cluster
            cy, cx, cr = centres[int(rng.integers(len(centres)))]
            angle = rng.uniform(0, 2 * np.pi)
            gap = (cr + r) * rng.uniform(0.8, 1.05)
            cy, cx = cy + gap * np.sin(angle), cx + gap * np.cos(angle)
        else:
            cy, cx = rng.uniform(-0.03, 1.03) * h, rng.uniform(-0.03, 1.03) * w
        if rng.random() < 0.08:  # a dividing pair: two small, bright, elongated halves side by side
            angle = rng.uniform(0, np.pi)
            for side in (-1, 1):
                py, px = cy + side * 0.55 * r * np.sin(angle), cx + side * 0.55 * r * np.cos(angle)
                rr, cc = draw.ellipse(py, px, 0.65 * r, 0.4 * r, shape=(h, w), rotation=angle + np.pi / 2)
                labels[rr, cc] = labels.max() + 1
        else:
            rr, cc = _shape_pixels(rng, str(rng.choice(["ellipse", "smooth", "smooth", "blob"])), cy, cx, r, (h, w))
            if len(rr):
                labels[rr, cc] = labels.max() + 1
        centres.append((cy, cx, r))
    haze = np.zeros((h, w))
    for cy, cx, r in centres[: int(len(centres) * rng.uniform(0, 1))]:  # faint cytoplasm around some nuclei
        rr, cc = _shape_pixels(rng, "blob", cy, cx, r * rng.uniform(1.5, 3), (h, w))
        haze[rr, cc] = np.maximum(haze[rr, cc], rng.uniform(0.02, 0.08))
    in_focus, out_focus = np.zeros((h, w)), np.zeros((h, w))
    chromatin = _smooth_noise(rng, (h, w), rng.uniform(1, 3))
    dim_share = rng.uniform(0, 0.4)
    for i, box in _object_boxes(labels):
        m = labels[box] == i
        dist = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        falloff = np.clip(dist / max(1.5, mean_r * rng.uniform(0.15, 0.5)), 0, 1)
        level = rng.uniform(0.06, 0.2) if rng.random() < dim_share else float(np.clip(rng.lognormal(np.log(0.5), 0.35), 0.15, 1))
        value = level * (0.5 + 0.5 * falloff) * (1 + rng.uniform(0.05, 0.35) * chromatin[box])
        layer = out_focus if rng.random() < 0.15 else in_focus
        layer[box][m] = value[m]
    gray = ndimage.gaussian_filter(haze, 3) + rng.uniform(0, 0.06) + 0.02 * _smooth_noise(rng, (h, w), 50)
    gray = np.maximum(gray, in_focus)
    if out_focus.any():
        gray = np.maximum(gray, ndimage.gaussian_filter(out_focus, rng.uniform(1.5, 3)))
    gray = np.clip(gray, 0, None)
    photons = rng.uniform(30, 400)  # shot noise: brighter pixels are noisier
    gray = rng.poisson(gray * photons) / photons
    tint = np.ones(3) if rng.random() < 0.65 else rng.choice(
        [np.array([0.3, 0.5, 1.0]), np.array([0.2, 1.0, 0.3]), np.array([1.0, 0.25, 0.2]), np.array([1.0, 0.2, 1.0])])
    image = _degrade(rng, _gray_to_rgb(gray, tint), blur=(0.3, 1.5), noise=(0.002, 0.02))
    return image, labels


def _shade(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """Directional shading in [0.35, 1.15] over a boolean ``mask`` (h x w box): a rounded body lit from one side."""
    h, w = mask.shape
    yy, xx = np.mgrid[:h, :w].astype(float)
    angle = rng.uniform(0, 2 * np.pi)
    along = ((xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle)) / (max(h, w) / 2 + 1e-6)
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    round_ = np.clip(dist / (dist.max() + 1e-6), 0, 1) ** 0.5
    shade = 0.75 + rng.uniform(0.1, 0.35) * along + rng.uniform(0.1, 0.35) * (round_ - 0.5)
    if rng.random() < 0.3:  # a specular highlight on the lit side
        sy, sx = h / 2 - np.sin(angle) * h / 4, w / 2 - np.cos(angle) * w / 4
        shade += 0.4 * np.exp(-((yy - sy) ** 2 + (xx - sx) ** 2) / (2 * (max(h, w) / 10) ** 2))
    return np.clip(shade, 0.35, 1.15)


def _photo(rng: np.random.Generator, h: int, w: int):
    image = np.empty((h, w, 3))
    _paint(rng, image, np.ones((h, w), bool))
    palette = [_colour(rng) for _ in range(int(rng.integers(3, 7)))]
    clutter = np.zeros((h, w), np.int32)  # an unlabelled cluttered background in the objects' own colours
    _place_objects(rng, clutter, int(rng.integers(20, 120)), lambda: min(h, w) * rng.uniform(0.01, 0.12),
                   ["ellipse", "rectangle", "triangle", "blob", "smooth"])
    for i, box in _object_boxes(clutter):
        m = clutter[box] == i
        colour = palette[int(rng.integers(len(palette)))] if rng.random() < 0.5 else _colour(rng)
        tex = _texture(rng, m.shape)[..., None] * rng.uniform(0.02, 0.15)
        image[box][m] = np.clip(colour + tex, 0, 1)[m]
    if rng.random() < 0.5:  # the background out of focus
        image = ndimage.gaussian_filter(image, (rng.uniform(1, 4),) * 2 + (0,))
    labels = np.zeros((h, w), np.int32)
    count = int(rng.integers(2, 9))
    for index in range(1, count + 1):
        size = min(h, w) * rng.uniform(0.08, 0.3)
        cy, cx = rng.uniform(0.05, 0.95) * h, rng.uniform(0.05, 0.95) * w
        parts = [(cy, cx, size)]
        if rng.random() < 0.35:  # a composite object: body plus one or two attached parts
            for _ in range(int(rng.integers(1, 3))):
                angle = rng.uniform(0, 2 * np.pi)
                parts.append((cy + size * 0.9 * np.sin(angle), cx + size * 0.9 * np.cos(angle), size * rng.uniform(0.3, 0.6)))
        shape = np.zeros((h, w), bool)
        for py, px, ps in parts:
            rr, cc = _shape_pixels(rng, str(rng.choice(["ellipse", "rectangle", "smooth", "blob", "triangle"])), py, px, ps, (h, w))
            shape[rr, cc] = True
        if not shape.any():
            continue
        shift = (rng.normal(0, size * 0.12), rng.normal(0, size * 0.12))  # its shadow first
        shadow = ndimage.gaussian_filter(ndimage.shift(shape.astype(float), shift, order=0), size * 0.05 + 1)
        image *= (1 - rng.uniform(0.2, 0.5) * shadow)[..., None]
        labels[shape] = index
        rows, cols = np.nonzero(shape)
        box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        m = shape[box]
        colour = palette[int(rng.integers(len(palette)))]
        second = _colour(rng)
        mix = (_texture(rng, m.shape) * 0.5 + 0.5)[..., None] * rng.uniform(0.05, 0.5)
        body = (colour * (1 - mix) + second * mix) * _shade(rng, m)[..., None]
        image[box][m] = np.clip(body, 0, 1)[m]
    return _degrade(rng, np.clip(image, 0, 1), blur=(0.0, 1.0), noise=(0.0, 0.025)), labels


_RENDERERS = {
    "fluorescence": _fluorescence,
    "brightfield": _brightfield,
    "coins": _coins,
    "dead_leaves": _dead_leaves,
    "objects": _objects,
    "nuclei": _nuclei,
    "photo": _photo,
}


@dataclass
class Stack:
    """A Z x H x W x 3 uint8 stack and its 3D instance masks (N x Z x H x W bool)."""

    image: np.ndarray
    masks: np.ndarray
    seed: int


def generate_stack(seed: int, depth: int = 16, size: int = 192) -> Stack:
    """A 3D fluorescence stack: ellipsoid nuclei (z radius 2-6 slices) with chromatin texture, blurred more
    along z than in the plane (an optical section), with shot noise. Same seed, same stack."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((depth, size, size), np.int32)
    mean_r = rng.uniform(6, 18)
    count = int(np.clip(rng.uniform(0.1, 0.3) * size * size / (np.pi * mean_r**2), 3, 60))
    zz, yy, xx = np.ogrid[:depth, :size, :size]
    for i in range(1, count + 1):
        rz, ry, rx = rng.uniform(2, 6), mean_r * rng.uniform(0.7, 1.3), mean_r * rng.uniform(0.7, 1.3)
        cz, cy, cx = rng.uniform(0, depth), rng.uniform(0, size), rng.uniform(0, size)
        inside = ((zz - cz) / rz) ** 2 + ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        labels[inside & (labels == 0)] = i  # nuclei do not overlap in 3D
    gray = np.zeros(labels.shape)
    texture = ndimage.gaussian_filter(rng.normal(size=labels.shape), (0.7, 1.5, 1.5))
    texture /= texture.std() + 1e-6
    for i, box in _object_boxes(labels):
        m = labels[box] == i
        gray[box][m] = (rng.uniform(0.25, 0.9) * (1 + 0.2 * texture[box]))[m]
    gray = ndimage.gaussian_filter(gray, (rng.uniform(0.8, 1.5), rng.uniform(0.5, 1.2), rng.uniform(0.5, 1.2)))
    photons = rng.uniform(50, 300)
    gray = np.clip(rng.poisson(np.clip(gray + 0.03, 0, None) * photons) / photons, 0, 1)
    image = (np.repeat(gray[..., None], 3, axis=-1) * 255 + 0.5).astype(np.uint8)
    return Stack(image=image, masks=_instance_masks(labels), seed=seed)
