"""Shared fixtures: tiny random models built in the session, and the ../shared fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tinysam_annotate.backends.torch_backend import TorchBackend
from tinysam_annotate.build import SamConfig, build_sam
from tinysam_annotate.modeling import TinyViTConfig, ViTConfig

ROOT = Path(__file__).resolve().parents[1]  # the repository
SHARED = ROOT.parent / "shared"
CONFORMANCE = SHARED / "conformance"
DATA = SHARED / "data"

# A TinyViT small enough for fast tests, at 256 px input (16 x 16 embeddings, 64 x 64 low-res logits).
TINY_TINYVIT = TinyViTConfig(img_size=256, embed_dims=(16, 32, 32, 64), depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4))
TINY_VIT = ViTConfig(img_size=256, embed_dim=32, depth=2, num_heads=2, window_size=7, global_attn_indexes=(1,))


class CountingBackend:
    """Delegates to a real backend and counts encoder passes."""

    def __init__(self, inner):
        self.inner, self.encodes = inner, 0
        self.identity, self.image_size = inner.identity, inner.image_size
        self.low_res_size, self.always_multimask = inner.low_res_size, inner.always_multimask
        self.device, self.device_description = inner.device, inner.device_description
        self.as_native = inner.as_native

    def encode(self, image):
        self.encodes += 1
        return self.inner.encode(image)

    def decode(self, *args):
        return self.inner.decode(*args)


def _randomise(sam: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Perturb every parameter so masks depend on image and prompt (fresh init gives near-constant masks)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sam.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(20.0)
    return sam.eval()


def make_tiny_sam(encoder: str = "tinyvit", always_multimask: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    config = SamConfig(TINY_TINYVIT if encoder == "tinyvit" else TINY_VIT, always_multimask=always_multimask)
    return _randomise(build_sam(config), seed)


@pytest.fixture(scope="session")
def tiny_sam():
    return make_tiny_sam()


@pytest.fixture(scope="session")
def tiny_backend(tiny_sam):
    return TorchBackend(tiny_sam, model_id="tiny")


@pytest.fixture(scope="session")
def tiny_vit_sam():
    return make_tiny_sam("vit", always_multimask=False, seed=1)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def scene(rng):
    """A 120 x 160 RGB image with two bright discs on a noisy background."""
    yy, xx = np.mgrid[:120, :160]
    img = rng.integers(0, 40, size=(120, 160, 3)).astype(np.float32)
    img[(yy - 40) ** 2 + (xx - 50) ** 2 < 20**2] += 180
    img[(yy - 80) ** 2 + (xx - 120) ** 2 < 15**2] += 120
    return img.clip(0, 255).astype(np.uint8)


def require_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (the ../shared fixtures are not beside this checkout)")
    return path


def serve_tiny_app(wrap=None, **config_overrides):
    """Start the Gradio app on a tiny random model in this process; yields its URL (no trailing slash).

    ``wrap(backend)`` may replace the backend (e.g. a slowed-down one)."""
    from tinysam_annotate.app.engine import AppConfig, EngineRegistry
    from tinysam_annotate.app.ui import build_app, launch_kwargs

    config = AppConfig(model="tiny", backend="torch", precision="fp32", **config_overrides)
    wrap = wrap or (lambda backend: backend)
    registry = EngineRegistry(config, lambda m, b, p: wrap(TorchBackend(make_tiny_sam(), model_id=m)))
    app = build_app(config, registry)
    _, url, _ = app.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_kwargs(config))
    try:
        yield url.rstrip("/")
    finally:
        app.close()


class OracleGenerator:
    """Everything mode returning the bright connected regions of an image: tests tiling and merging, not the model."""

    def __init__(self, predictor):
        self.predictor = predictor

    def generate(self, image, should_stop=None, progress=None):
        from skimage.measure import label

        regions = label(image[..., 0] > 128)
        return [{"segmentation": regions == i, "predicted_iou": 1.0} for i in range(1, regions.max() + 1)]

