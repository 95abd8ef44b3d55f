"""The canvas view: small images scaled up, large ones zoomed, and clicks mapped back to the pixel drawn under them."""

from __future__ import annotations

import numpy as np
import pytest

from tinysam_annotate.app import handlers as h
from tinysam_annotate.app.engine import Engine
from tinysam_annotate.app.render import canvas
from tinysam_annotate.app.view import DISPLAY_SIZE, View, ViewError, fit_view, pan
from tinysam_annotate.cache import EmbeddingCache


@pytest.mark.parametrize(("width", "height", "scale"), [(256, 256, 4.0), (160, 120, 6.0), (384, 303, 2.0),
                                                        (700, 500, 1.0), (3000, 2000, DISPLAY_SIZE / 3000)])
def test_whole_image_views_fill_the_panel_small_images_by_a_whole_factor(width, height, scale):
    view = fit_view(width, height)
    assert (view.x0, view.y0, view.width, view.height) == (0, 0, width, height)
    assert view.scale == pytest.approx(scale)
    assert max(view.display_size) <= DISPLAY_SIZE


@pytest.mark.parametrize(("width", "height", "zoom"), [(256, 256, 1), (160, 120, 2), (700, 500, 4), (3000, 2000, 8),
                                                       (600, 400, 2)])
def test_every_display_pixel_maps_to_the_image_pixel_drawn_there(width, height, zoom):
    """Render an image whose pixels hold their own (x, y), then map each display pixel back: same pixel."""
    ys, xs = np.mgrid[0:height, 0:width]
    coordinates = np.stack([xs, ys], axis=-1)
    view = fit_view(width, height, zoom, centre=(width * 0.3, height * 0.7))
    assert view.scale >= 1  # scaled down, a display pixel averages several image pixels: the next test
    drawn = view.sample(coordinates)
    rng = np.random.default_rng(0)
    dw, dh = view.display_size
    for u, v in zip(rng.integers(0, dw, 200), rng.integers(0, dh, 200), strict=True):
        assert view.to_image(u, v) == tuple(float(c) for c in drawn[v, u])


def test_a_scaled_down_click_lands_inside_the_area_its_display_pixel_averages():
    view = fit_view(3000, 2000)
    x, y = view.to_image(100, 50)
    assert 100 / view.scale - 0.5 <= x <= 101 / view.scale and 50 / view.scale - 0.5 <= y <= 51 / view.scale
    assert view.render_image(np.zeros((2000, 3000, 3), np.uint8)).shape == (683, 1024, 3)


def test_zoomed_views_centre_on_the_point_and_stay_inside_the_image():
    view = fit_view(3000, 2000, 4, centre=(1500, 1000))
    assert (view.width, view.height) == (750, 500) and (view.x0, view.y0) == (1125, 750)
    corner = fit_view(3000, 2000, 4, centre=(10, 10))
    assert (corner.x0, corner.y0) == (0, 0)
    far = fit_view(3000, 2000, 8, centre=(2999, 1999))
    assert far.x0 + far.width == 3000 and far.y0 + far.height == 2000
    moved = pan(view, 3000, 2000, 1, -1)
    assert (moved.x0, moved.y0) == (1125 + 375, 750 - 250)
    assert pan(moved, 3000, 2000, 9, 9).x0 + view.width == 3000  # clamped
    with pytest.raises(ViewError, match="zoom"):
        fit_view(100, 100, 3)


@pytest.mark.parametrize("text", ["", "null", "[]", '{"x0": 0}', '{"x0": 0, "y0": 0, "width": 0, "height": 5, "scale": 1}',
                                  '{"x0": 0, "y0": 0, "width": 5, "height": 5, "scale": "nan"}', "{{{"])
def test_a_malformed_view_from_the_browser_is_refused(text):
    with pytest.raises(ViewError, match="not a canvas view"):
        View.from_json(text)


@pytest.fixture
def state(tiny_backend, scene, tmp_path):
    s = h.open_image(h.AppState(workdir=tmp_path / "session"), Engine(tiny_backend, EmbeddingCache(directory=None)), scene)
    yield s
    h.close(s)


def test_a_click_is_mapped_through_the_view_the_browser_showed(state):
    """Zoom changes between a click and its handling: the click still lands where the user saw it."""
    shown = state.view  # 160 x 120 at 6x
    h.click(state, 40, 30)
    h.set_zoom(state, "4x")
    assert state.view != shown and state.view.x0 <= 40 < state.view.x0 + state.view.width
    h.click_on_canvas(state, shown.to_json(), 6 * 100 + 3, 6 * 70 + 3)  # display pixel inside image pixel (100, 70)
    assert state.session.points[-1] == (100.0, 70.0)
    h.click_on_canvas(state, None, 0, 0)  # the current (zoomed) view
    assert state.session.points[-1] == (float(state.view.x0), float(state.view.y0))
    assert "3 points, last at" in state.message
    with pytest.raises(ViewError):
        h.click_on_canvas(state, "garbage", 1, 1)


def test_zoom_follows_the_last_prompt_and_the_canvas_keeps_its_size(state):
    h.click(state, 150, 110)
    h.set_zoom(state, "8x")
    assert h.zoom_level(state) == 8
    view = state.view
    assert (view.x0, view.y0, view.width, view.height) == (140, 102, 20, 15)  # centred on (150, 110)
    assert canvas(state.session, view).shape[:2] == canvas(state.session, fit_view(160, 120)).shape[:2]
    h.set_zoom(state, "fit")
    assert h.zoom_level(state) == 1 and state.view == fit_view(160, 120)
    with pytest.raises(ViewError):
        h.set_zoom(state, "3x")
