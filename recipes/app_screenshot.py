"""Screenshot of the web app on the shipped model in headless Debian Chromium: the coins example, one click on
each of the largest coins, each accepted.

    python -m recipes.app_screenshot recipes/results/app.png
"""

from __future__ import annotations

import shutil
import sys

CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"]


def click_image_pixel(page, x: int, y: int) -> None:
    """Click the centre of image pixel (x, y) of the canvas as drawn: through the view the page holds (the hidden
    #view box) and Gradio's fit of the PNG into the panel (scaled down to fit, never up, centred)."""
    from tinysam_annotate.app.view import View

    canvas = page.locator("#canvas img")
    view = View.from_json(page.locator("#view textarea").input_value())
    natural_w, natural_h = view.display_size
    page.wait_for_function("([w, h]) => { const img = document.querySelector('#canvas img');"
                           " return img && img.complete && img.naturalWidth === w && img.naturalHeight === h; }",
                           arg=[natural_w, natural_h], timeout=30_000)  # the canvas of that view has loaded
    box = canvas.bounding_box()
    r = min(box["width"] / natural_w, box["height"] / natural_h, 1)
    left, top = (box["width"] - natural_w * r) / 2, (box["height"] - natural_h * r) / 2
    u, v = view.to_display([x, y])[0]
    canvas.click(position={"x": left + u * r, "y": top + v * r})


def coin_centres(n: int) -> list[tuple[int, int]]:
    """(x, y) centroids of the n largest coin-like bright regions of skimage's coins: where a user would click."""
    from skimage import data, filters, measure

    image = data.coins()
    regions = measure.regionprops(measure.label(image > filters.threshold_otsu(image)))
    coins = [r for r in regions if r.area > 200 and r.solidity > 0.9]  # round and solid: not the lit background
    largest = sorted(coins, key=lambda r: r.area, reverse=True)[:n]
    return [(int(r.centroid[1]), int(r.centroid[0])) for r in largest]


def main(out: str, objects: int = 6) -> None:
    from playwright.sync_api import sync_playwright

    from tinysam_annotate.app.engine import AppConfig
    from tinysam_annotate.app.ui import build_app, launch_kwargs

    config = AppConfig()
    app = build_app(config)
    _, url, _ = app.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_kwargs(config))
    try:
        with sync_playwright() as p:
            chromium = shutil.which("chromium") or shutil.which("chromium-browser")
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            page.locator("#btn-example").click()
            page.get_by_text("coins.png:").wait_for(timeout=120_000)
            for number, (x, y) in enumerate(coin_centres(objects), start=1):
                click_image_pixel(page, x, y)
                page.get_by_text(f"1 point, last at ({x}, {y})").wait_for(timeout=60_000)
                page.locator("body").click(position={"x": 5, "y": 5})
                page.keyboard.press("a")
                page.get_by_text(f"object {number} (object) accepted").wait_for(timeout=60_000)
            click_image_pixel(page, *coin_centres(objects + 1)[-1])  # a preview in progress, for the picture
            page.get_by_text("1 point, last at").wait_for(timeout=60_000)
            page.mouse.move(5, 5)
            page.screenshot(path=out, clip={"x": 0, "y": 0, "width": 1400, "height": 900})
            browser.close()
    finally:
        app.close()
    print(f"wrote {out} ({objects} objects accepted)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "recipes/results/app.png")
