"""Reading crop files of every format users have into 2-D uint8, and refusing bad ones well."""

from __future__ import annotations

import os
import pathlib
import re

import cv2
import numpy as np
import pytest
from PIL import Image

from karyo_gui.core import images
from karyo_gui.core.images import (
    MAX_CROP_SIDE,
    CropReadError,
    file_hash,
    is_image_file,
    read_crop,
    read_crop_and_hash,
)

BACKGROUND = 255
ROD = 40


def rod_crop(height: int = 60, width: int = 24) -> np.ndarray:
    """A white crop with a dark vertical rod in the middle and a few grey bands."""
    crop = np.full((height, width), BACKGROUND, np.uint8)
    crop[5 : height - 5, width // 2 - 4 : width // 2 + 4] = ROD
    crop[height // 3, width // 2 - 4 : width // 2 + 4] = 120
    return crop


def assert_grey8(image: np.ndarray, shape: tuple[int, int]) -> None:
    assert isinstance(image, np.ndarray)
    assert image.dtype == np.uint8
    assert image.ndim == 2
    assert image.shape == shape


def png_bytes(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


# --------------------------------------------------------------------------- good files


def test_8_bit_lzw_tiff_reads_exactly(tmp_path):
    crop = rod_crop()
    path = tmp_path / "crop.tiff"
    Image.fromarray(crop).save(path, compression="tiff_lzw")
    assert Image.open(path).info.get("compression") == "tiff_lzw"
    image = read_crop(path)
    assert_grey8(image, crop.shape)
    np.testing.assert_array_equal(image, crop)


def test_16_bit_tiff_is_stretched_keeping_the_order_of_values(tmp_path):
    levels = np.array([0, 1000, 20000, 40000, 65535], np.uint16)
    crop = np.repeat(levels[np.newaxis, :], 12, axis=0)  # 12 x 5: one column per level
    path = tmp_path / "crop16.tif"
    Image.fromarray(crop).save(path)
    assert Image.open(path).mode.startswith("I;16")
    image = read_crop(path)
    assert_grey8(image, crop.shape)
    row = image[0].astype(int)
    assert np.all(np.diff(row) > 0), row  # brighter stays brighter, distinct stays distinct
    assert row[0] == 0 and row[-1] == 255
    assert np.all(image == image[0])  # every row the same


def test_12_bit_data_in_a_16_bit_container_maps_4095_to_white(tmp_path):
    crop = np.full((30, 12), 4095, np.uint16)  # a 12-bit camera's white background
    crop[5:25, 4:8] = 0
    crop[15, 4:8] = 2048
    path = tmp_path / "crop12.tif"
    Image.fromarray(crop).save(path, compression="tiff_lzw")
    image = read_crop(path)
    assert_grey8(image, crop.shape)
    assert image[0, 0] == 255  # not 4095/65535*255 = 16: the background stays white
    assert image[10, 5] == 0
    assert abs(int(image[15, 5]) - 128) <= 1  # half the 12-bit range is mid grey


def test_grey_alpha_tiff_makes_transparent_pixels_white(tmp_path):
    crop = rod_crop()
    crop[:, :3] = 0  # black, but fully transparent: must become background
    alpha = np.full(crop.shape, 255, np.uint8)
    alpha[:, :3] = 0
    path = tmp_path / "crop_la.tif"
    Image.merge("LA", (Image.fromarray(crop), Image.fromarray(alpha))).save(
        path, compression="tiff_lzw"
    )
    assert Image.open(path).mode == "LA"
    image = read_crop(path)
    assert_grey8(image, crop.shape)
    assert np.all(image[:, :3] == 255)
    np.testing.assert_array_equal(image[:, 3:], crop[:, 3:])  # opaque pixels unchanged


def test_rgb_png_becomes_grey(tmp_path):
    crop = rod_crop()
    path = tmp_path / "crop.png"
    cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR))
    assert Image.open(path).mode == "RGB"
    image = read_crop(path)
    assert_grey8(image, crop.shape)
    np.testing.assert_array_equal(image, crop)  # grey colours keep their value


def test_rgba_png_makes_transparent_pixels_white(tmp_path):
    crop = rod_crop()
    bgra = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGRA)
    bgra[:, -4:, :3] = 0
    bgra[:, -4:, 3] = 0  # transparent black border
    path = tmp_path / "crop.png"
    cv2.imwrite(str(path), bgra)
    assert Image.open(path).mode == "RGBA"
    image = read_crop(path)
    assert_grey8(image, crop.shape)
    assert np.all(image[:, -4:] == 255)
    np.testing.assert_array_equal(image[:, :-4], crop[:, :-4])


def test_bmp_reads_exactly(tmp_path):
    crop = rod_crop()
    path = tmp_path / "crop.bmp"
    cv2.imwrite(str(path), crop)
    image = read_crop(path)
    assert_grey8(image, crop.shape)
    np.testing.assert_array_equal(image, crop)


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".JPG"])
def test_jpeg_reads_approximately(tmp_path, suffix):
    crop = rod_crop()
    path = tmp_path / f"crop{suffix}"
    cv2.imwrite(str(path), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
    image = read_crop(path)
    assert_grey8(image, crop.shape)
    assert np.abs(image.astype(int) - crop.astype(int)).mean() < 5  # lossy, but close
    assert image[30, 12] < 100 and image[30, 1] > 200  # rod dark, background light


def test_read_crop_and_hash_hashes_the_file_bytes(tmp_path):
    crop = rod_crop()
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    cv2.imwrite(str(first), crop)
    changed = crop.copy()
    changed[0, 0] = 0
    cv2.imwrite(str(second), changed)
    image, digest = read_crop_and_hash(first)
    np.testing.assert_array_equal(image, crop)
    assert digest.startswith("sha256:")
    assert digest == file_hash(first)
    assert digest != file_hash(second)


def test_is_image_file():
    assert is_image_file(pathlib.Path("a.TIFF"))
    assert is_image_file(pathlib.Path("a.png"))
    assert not is_image_file(pathlib.Path("notes.txt"))
    assert not is_image_file(pathlib.Path("._crop.png"))  # macOS resource fork


# --------------------------------------------------------------------------- bad files


def read_error(path) -> CropReadError:
    """The CropReadError read_crop raises (any other exception fails the test)."""
    with pytest.raises(CropReadError) as info:
        read_crop(path)
    error = info.value
    assert error.path == os.fspath(path)
    message = str(error)
    message.encode("utf-8")  # printable on any terminal
    assert os.path.basename(os.fsencode(path)).decode("utf-8", "replace") in message
    assert error.reason and error.reason in message
    return error


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.tif"
    path.write_bytes(b"")
    assert "empty" in read_error(path).reason


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_truncated_file(tmp_path, suffix):
    crop = rod_crop(200, 80)
    whole = tmp_path / f"whole{suffix}"
    if suffix == ".tif":
        Image.fromarray(crop).save(whole, compression="tiff_lzw")
    else:
        cv2.imwrite(str(whole), crop)
    data = whole.read_bytes()
    path = tmp_path / f"truncated{suffix}"
    path.write_bytes(data[: len(data) // 2])
    reason = read_error(path).reason
    assert re.search(r"corrupt|truncated|not a readable image", reason)


def test_text_file_named_png(tmp_path):
    path = tmp_path / "fake.png"
    path.write_text("this is not a picture\n" * 20)
    assert "not a readable image" in read_error(path).reason


def test_huge_image_is_refused_naming_its_size(tmp_path):
    path = tmp_path / "slide.png"
    assert cv2.imwrite(str(path), np.full((20000, 20000), 255, np.uint8))
    assert path.stat().st_size < 5_000_000  # constant: compresses small
    reason = read_error(path).reason
    assert re.search(r"20000 x 20000|400,?000,?000", reason), reason
    assert "too large" in reason or "larger" in reason


def test_image_just_over_the_size_limit_is_refused_naming_its_size(tmp_path):
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), np.full((40, MAX_CROP_SIDE + 1), 255, np.uint8))
    reason = read_error(path).reason
    assert f"{MAX_CROP_SIDE + 1} x 40" in reason
    assert "larger" in reason


def test_one_pixel_image(tmp_path):
    path = tmp_path / "dot.png"
    cv2.imwrite(str(path), np.zeros((1, 1), np.uint8))
    reason = read_error(path).reason
    assert "1 x 1" in reason and "small" in reason


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    cv2.imwrite(str(path), rod_crop())
    path.chmod(0)
    if os.geteuid() == 0:
        # root reads anything whatever its mode: answer as the operating system would
        real_open = images.open_regular_file

        def open_regular_file(file):
            if pathlib.Path(file).name == path.name:
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file)

        monkeypatch.setattr(images, "open_regular_file", open_regular_file)
    try:
        assert "permission denied" in read_error(path).reason
    finally:
        path.chmod(0o644)


def test_missing_file(tmp_path):
    assert "not found" in read_error(tmp_path / "gone.png").reason


def test_folder_instead_of_file(tmp_path):
    folder = tmp_path / "clase1.png"
    folder.mkdir()
    assert "folder" in read_error(folder).reason


def test_file_name_that_is_not_utf8_reads(tmp_path):
    crop = rod_crop()
    path = tmp_path / os.fsdecode(b"crop_\xff.png")
    path.write_bytes(png_bytes(crop))
    np.testing.assert_array_equal(read_crop(path), crop)


def test_file_name_that_is_not_utf8_is_named_printably_in_errors(tmp_path):
    path = tmp_path / os.fsdecode(b"crop_\xff.png")
    path.write_text("not an image")
    error = read_error(path)
    assert "crop_\ufffd.png" in str(error)
    assert error.path == str(path)  # the real name, to open or delete the file
