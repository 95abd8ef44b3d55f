"""Image input: every layout and dtype of DESIGN.md's bad-input list gets a correct view or a typed error."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from tinysam_annotate import SamPredictor
from tinysam_annotate.errors import (
    ChannelError,
    ImageError,
    ImageTooLargeError,
    TruncatedImageError,
    UnsupportedImageError,
)
from tinysam_annotate.io import as_model_view, from_array, infer_axes, load_image, read_image, to_uint8

from ..conftest import DATA, require_shared


def _rgb(h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# -- dtypes and intensities ----------------------------------------------------------------------


def test_uint8_rgb_passes_through_unchanged():
    img = _rgb()
    assert as_model_view(img) is img


def test_16bit_is_stretched_not_clipped():
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (8, 1))
    view = load_image(ramp).rgb
    assert view.shape == (8, 256, 3) and view.dtype == np.uint8
    row = view[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and np.all(np.diff(row) >= 0)
    assert len(np.unique(row)) > 200  # the full range is used, not saturated at 255


def test_16bit_png_file(tmp_path):
    arr = (np.arange(64 * 64).reshape(64, 64) * 10).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    assert loaded.original.dtype in (np.uint16, np.int32) and loaded.original.max() == arr.max()
    assert loaded.rgb.max() == 255 and loaded.rgb.min() == 0


def test_float_with_nan_and_inf():
    arr = np.linspace(-1.0, 1.0, 400, dtype=np.float32).reshape(20, 20)
    arr[0, 0], arr[1, 1], arr[2, 2] = np.nan, np.inf, -np.inf
    view = load_image(arr).rgb
    assert view[0, 0, 0] == 0 and view[1, 1, 0] == 0 and view[2, 2, 0] == 0
    assert view[-1, -1, 0] == 255 and view[10, 10, 0] > 100


def test_all_nan_and_constant_images_give_zeros():
    assert not load_image(np.full((8, 8), np.nan)).rgb.any()
    assert not load_image(np.full((8, 8), 1234, np.uint16)).rgb.any()


def test_bool_mask_image():
    arr = np.zeros((4, 4), bool)
    arr[1, 1] = True
    assert load_image(arr).rgb[1, 1, 0] == 255


def test_to_uint8_rejects_strings():
    with pytest.raises(TypeError):
        to_uint8(np.array([["a"]]))
    with pytest.raises(UnsupportedImageError, match="numeric"):
        from_array(np.array([["a", "b"], ["c", "d"]]))


# -- layouts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, axes",
    [
        ((20, 30), "YX"),
        ((20, 30, 3), "YXS"),
        ((20, 30, 4), "YXS"),
        ((20, 30, 1), "YXS"),
        ((3, 20, 30), "CYX"),
        ((2, 20, 30), "CYX"),
        ((1, 20, 30), "CYX"),
        ((20, 30, 6), "YXS"),
        ((10, 20, 30), "QYX"),
        ((1, 1, 20, 30), "QCYX"),
        ((1, 20, 30, 3), "QYXS"),
        ((5, 2, 20, 30), "QCYX"),
        ((1, 5, 3), "YXS"),
    ],
)
def test_infer_axes(shape, axes):
    assert infer_axes(shape) == axes


@pytest.mark.parametrize("shape", [(5,), (), (1, 1, 1, 1, 1, 1, 1)])
def test_uninterpretable_shapes(shape):
    with pytest.raises(UnsupportedImageError):
        from_array(np.zeros(shape, np.uint8))


def test_empty_array():
    with pytest.raises(UnsupportedImageError, match="no pixels"):
        load_image(np.zeros((0, 10, 3), np.uint8))


def test_channel_first_and_last_agree():
    rgb = _rgb()
    assert np.array_equal(load_image(np.moveaxis(rgb, -1, 0)).rgb, load_image(rgb).rgb)


def test_singleton_axes_are_ignored():
    rgb = _rgb()
    assert np.array_equal(load_image(rgb[None]).rgb, rgb)
    gray = rgb[..., 0]
    assert np.array_equal(load_image(gray[None, None]).rgb[..., 1], gray)
    assert np.array_equal(load_image(gray[..., None]).rgb[..., 2], gray)


def test_multichannel_needs_a_valid_choice():
    arr = np.random.default_rng(1).integers(0, 4000, size=(5, 16, 16)).astype(np.uint16)
    with pytest.raises(UnsupportedImageError, match="stack of 5"):  # 5 leading planes read as a stack...
        load_image(arr)
    with pytest.raises(ChannelError, match="5 channels"):  # ...unless the axes say channels
        load_image(arr, axes="CYX")
    with pytest.raises(ChannelError, match="5 channels"):
        load_image(np.moveaxis(arr, 0, -1))
    one = load_image(arr, channels=3, axes="CYX").rgb
    assert np.array_equal(one[..., 0], one[..., 1]) and np.array_equal(one[..., 0], to_uint8(arr[3]))
    three = load_image(np.moveaxis(arr, 0, -1), channels=[4, 0, 2]).rgb
    assert np.array_equal(three[..., 0], to_uint8(arr[4])) and np.array_equal(three[..., 2], to_uint8(arr[2]))
    with pytest.raises(ChannelError, match="out of range"):
        load_image(arr, channels=7, axes="CYX")
    with pytest.raises(ChannelError, match="1 to 3"):
        load_image(arr, channels=[0, 1, 2, 3], axes="CYX")


def test_two_channels_map_to_red_and_green():
    arr = np.random.default_rng(2).random((2, 8, 8)).astype(np.float32)
    view = load_image(arr).rgb
    assert not view[..., 2].any() and view[..., 0].any() and view[..., 1].any()


@pytest.mark.parametrize("layout", ["CYX", "YXC"])
def test_multichannel_tiff_with_channel_choice(tmp_path, layout):
    data = np.random.default_rng(3).integers(0, 60000, size=(4, 32, 40)).astype(np.uint16)
    stored = data if layout == "CYX" else np.moveaxis(data, 0, -1)
    path = tmp_path / "multi.tif"
    tifffile.imwrite(path, stored, photometric="minisblack", metadata={"axes": layout})
    source = read_image(path)
    assert source.n_channels == 4 and source.size == (32, 40) and source.n_slices == 1
    view = source.model_view(channels=1)
    assert np.array_equal(view[..., 0], to_uint8(data[1]))


def test_tiff_stack_per_slice_access(tmp_path):
    stack = np.stack([np.full((16, 16), i * 1000, np.uint16) + np.arange(16, dtype=np.uint16) for i in range(5)])
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, metadata={"axes": "ZYX"})
    source = read_image(path)
    assert source.n_slices == 5 and source.stack_axes == "Z"
    assert np.array_equal(source.plane(3)[..., 0], stack[3])
    with pytest.raises(UnsupportedImageError, match="stack of 5"):
        load_image(path)
    assert load_image(path, slice_index=4).original.max() == stack[4].max()
    with pytest.raises(UnsupportedImageError, match="out of range"):
        source.plane(5)


def test_rgb_tiff(tmp_path):
    rgb = _rgb()
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    assert np.array_equal(load_image(tmp_path / "rgb.tif").rgb, rgb)


def test_shared_nuclei_tiff():
    path = require_shared(DATA / "nuclei_256.tif")
    loaded = load_image(path)
    assert loaded.rgb.shape == (256, 256, 3)


# -- Pillow modes and EXIF -----------------------------------------------------------------------


def test_rgba_palette_grayscale_files(tmp_path):
    rgb = _rgb()
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 128, np.uint8)], axis=-1)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert np.array_equal(load_image(tmp_path / "rgba.png").rgb, rgb)

    pal = Image.fromarray(rgb).quantize(colors=16)
    pal.save(tmp_path / "pal.png")
    assert np.array_equal(load_image(tmp_path / "pal.png").rgb, np.asarray(pal.convert("RGB")))

    gray = rgb[..., 0]
    Image.fromarray(gray).save(tmp_path / "gray.png")
    view = load_image(tmp_path / "gray.png").rgb
    assert all(np.array_equal(view[..., i], gray) for i in range(3))

    Image.fromarray(gray).convert("LA").save(tmp_path / "la.png")
    assert np.array_equal(load_image(tmp_path / "la.png").rgb[..., 0], gray)

    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert load_image(tmp_path / "cmyk.jpg").rgb.shape == rgb.shape


@pytest.mark.parametrize("orientation, expected_hw", [(1, (10, 20)), (3, (10, 20)), (6, (20, 10)), (8, (20, 10))])
def test_exif_orientation_is_applied(tmp_path, orientation, expected_hw):
    img = np.zeros((10, 20, 3), np.uint8)
    img[:5, :5] = 255  # a marker in the top-left corner
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    pil.save(path, exif=exif, quality=95)
    view = load_image(path).rgb
    assert view.shape[:2] == expected_hw
    if orientation == 6:  # rotated 90 degrees clockwise for display: the marker goes top-right
        assert view[:5, -5:].mean() > 200 and view[:5, :5].mean() < 50


# -- bad files -----------------------------------------------------------------------------------


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UnsupportedImageError, match="empty"):
        read_image(tmp_path / "empty.png")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(UnsupportedImageError, match="not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(UnsupportedImageError, match="directory"):
        read_image(tmp_path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(tmp_path, fmt):
    path = tmp_path / f"t.{fmt.lower()}"
    Image.fromarray(_rgb(128, 128)).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TruncatedImageError, match="truncated"):
        read_image(path)


def test_truncated_tiff(tmp_path):
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, np.random.default_rng(0).integers(0, 255, (256, 256), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ImageError):
        read_image(path)


@pytest.mark.parametrize(
    "content",
    [
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        b"<!DOCTYPE html><html><body>hello</body></html>",
        b"%PDF-1.4 not an image",
    ],
)
def test_non_images_renamed_to_png(tmp_path, content):
    path = tmp_path / "innocent.png"
    path.write_bytes(content)
    with pytest.raises(UnsupportedImageError, match="not an image"):
        read_image(path)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(100_000, 100_000))  # 10 gigapixels in 100 bytes
    with pytest.raises(ImageTooLargeError, match="pixels"):
        read_image(path)


def test_pixel_limit_applies_to_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((100, 100), np.uint8))
    with pytest.raises(ImageTooLargeError):
        read_image(tmp_path / "big.tif", max_pixels=5000)


# -- odd sizes through the whole predictor ------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 3000, 3), (2500, 2, 3), (1, 5, 3)])
def test_extreme_sizes_predict(tiny_sam, shape):
    img = np.random.default_rng(0).integers(0, 255, size=shape, dtype=np.uint8)
    p = SamPredictor(tiny_sam)
    p.set_image(img)
    masks, iou, _ = p.predict(point_coords=np.array([[0.0, 0.0]]), point_labels=np.array([1]))
    assert masks.shape == (3, shape[0], shape[1]) and np.all(np.isfinite(iou))


def test_predictor_accepts_16bit_and_constant(tiny_sam):
    p = SamPredictor(tiny_sam)
    p.set_image(np.full((30, 40), 700, np.uint16))
    masks, _, _ = p.predict(box=np.array([5, 5, 30, 20]))
    assert masks.shape == (3, 30, 40)
