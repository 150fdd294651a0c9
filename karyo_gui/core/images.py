"""Reading chromosome crop files into 8-bit greyscale arrays.

Crops arrive as png, tif/tiff (LZW, 16-bit, grey+alpha), bmp or jpg. Whatever the file,
the result is a 2-D uint8 array with dark bands on a light background; transparent
pixels become background (white). Every failure raises CropReadError naming the file and
the reason in words a user can act on.

Pillow reads them; an uncompressed TIFF it calls truncated (some export tools write a strip
table that disagrees with itself: StripByteCounts and RowsPerStrip naming one strip while
StripOffsets lists several, ASCII tags without their NUL) is read again by libtiff, through
OpenCV, which recovers such files, before it is refused.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg"})
MAX_CROP_SIDE = 4096  # the largest real crops are ~100 x 200 px; this is a whole slide
MIN_CROP_SIDE = 3


class CropReadError(Exception):
    """A crop file that cannot be used; ``str()`` names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        # the message must print anywhere: a name that is not valid UTF-8 is shown with U+FFFD
        shown = os.fsencode(self.path).decode("utf-8", errors="replace")
        super().__init__(f"{shown}: {reason}")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def read_crop(path: str | os.PathLike) -> np.ndarray:
    """The crop at ``path`` as a 2-D uint8 array (dark bands on light background)."""
    data = _read_bytes(path)
    return decode_crop(data, path)


def read_crop_and_hash(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """The crop and the content hash of its file, from a single read."""
    data = _read_bytes(path)
    return decode_crop(data, path), content_hash(data)


def content_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_hash(path: str | os.PathLike) -> str:
    return content_hash(_read_bytes(path))


def _read_bytes(path: str | os.PathLike) -> bytes:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise CropReadError(path, "file not found (moved or deleted?)") from None
    except PermissionError:
        raise CropReadError(path, "permission denied: cannot read this file") from None
    except IsADirectoryError:
        raise CropReadError(path, "is a folder, not an image file") from None
    except OSError as error:
        raise CropReadError(path, f"cannot read file ({error.strerror or error})") from None
    if not data:
        raise CropReadError(path, "empty file (0 bytes)")
    return data


def decode_crop(data: bytes, path: str | os.PathLike = "<memory>") -> np.ndarray:
    checked = None  # the image once Pillow has read its header and its size is fine
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            _check_size(path, width, height)
            checked = image
            image.load()
    except CropReadError:
        raise
    except Image.DecompressionBombError as error:
        # Pillow refuses before our own size check can run; keep the size it found
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        size = f" ({int(pixels.group(1)):,} pixels)" if pixels else ""
        raise CropReadError(
            path,
            f"image is far too large{size} to be a chromosome crop "
            f"(at most {MAX_CROP_SIDE} px a side); is it a whole metaphase image?",
        ) from None
    except UnidentifiedImageError:
        raise CropReadError(path, "not a readable image (unknown or corrupt format)") from None
    except (OSError, ValueError, SyntaxError, EOFError, TypeError, OverflowError) as error:
        # TypeError: Pillow meets a tag of the wrong type in a damaged TIFF (a float offset);
        # OverflowError: a damaged 64-bit offset too large for Pillow even to seek to
        recovered = None if checked is None else _tiff_by_libtiff(data, checked)
        if recovered is not None:
            return recovered
        raise CropReadError(path, f"corrupt or truncated image ({error})") from None
    return _to_grey8(image, path)


def _tiff_by_libtiff(data: bytes, image: Image.Image) -> np.ndarray | None:
    """An uncompressed TIFF that Pillow could not load, as libtiff (OpenCV's TIFF reader)
    reads it, or None. Only when Pillow has read the header and its size passed the size
    check, the pixel data is all in the file (a really truncated file stays refused: for
    those libtiff would fill the missing rows in silently), and libtiff yields that size."""
    try:
        if image.format != "TIFF" or image.info.get("compression") != "raw":
            return None
        width, height = image.size
        offsets = image.tag_v2.get(273) or (0,)  # StripOffsets
        bits = image.tag_v2.get(258) or (1,)  # BitsPerSample, one per sample
        bits = (bits,) if isinstance(bits, int) else tuple(bits)
        needed = height * ((width * sum(int(b) for b in bits) + 7) // 8)
        if int(min(offsets)) + needed > len(data):
            return None
    except (TypeError, ValueError, AttributeError):  # a tag of the wrong type
        return None
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # libtiff's warnings
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    finally:
        cv2.utils.logging.setLogLevel(level)
    if pixels is None or pixels.shape[:2] != (height, width):
        return None
    return _grey_from_opencv(pixels)


def _grey_from_opencv(pixels: np.ndarray) -> np.ndarray:
    """An OpenCV image (grey, BGR or BGRA; 8 or 16 bit or float) as the 2-D uint8 crop,
    transparent pixels white, as ``_to_grey8`` makes Pillow's."""
    alpha = None
    if pixels.ndim == 3:
        if pixels.shape[2] in (2, 4):
            alpha, pixels = pixels[..., -1], pixels[..., :-1]
        if pixels.shape[2] == 3:
            if pixels.dtype not in (np.uint8, np.uint16, np.float32):
                pixels = pixels.astype(np.float32)
            pixels = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_BGR2GRAY)
        else:
            pixels = pixels[..., 0]
    grey = pixels if pixels.dtype == np.uint8 else _stretch_high_depth(pixels)
    if alpha is not None:
        top = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(alpha.dtype, 1.0)
        weight = np.clip(alpha.astype(np.float32) / top, 0.0, 1.0)
        grey = grey.astype(np.float32) * weight + 255.0 * (1.0 - weight)
        grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(grey)


def _check_size(path: str | os.PathLike, width: int, height: int) -> None:
    if max(width, height) > MAX_CROP_SIDE:
        raise CropReadError(
            path,
            f"image is {width} x {height} px, larger than a chromosome crop can be "
            f"(at most {MAX_CROP_SIDE} px a side); is it a whole metaphase image?",
        )
    if min(width, height) < MIN_CROP_SIDE:
        raise CropReadError(
            path, f"image is {width} x {height} px, too small to show a chromosome"
        )


def _to_grey8(image: Image.Image, path: str | os.PathLike) -> np.ndarray:
    # a multi-page TIFF: Image.open stands on the first page, the crop, and load() read it.
    # The other pages are never looked at (not even counted): a damaged later page must
    # not refuse a good crop, and counting them is what raised TypeError on one.
    mode = image.mode
    alpha = None
    if mode in ("LA", "La", "RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in image.info):
        # premultiplied alpha (La, RGBa: TIFF's associated alpha) has a lower-case "a"
        # band, so it is unpremultiplied first; getchannel("A") would raise on it
        straight = {"P": "RGBA", "PA": "RGBA", "La": "LA", "RGBa": "RGBA"}.get(mode)
        rgba = image.convert(straight) if straight else image
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        image = rgba.convert("L") if rgba.mode != "LA" else rgba.getchannel("L")
        mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        grey = _stretch_high_depth(np.asarray(image))
    elif mode == "L":
        grey = np.asarray(image, dtype=np.uint8)
    else:
        try:
            grey = np.asarray(image.convert("L"), dtype=np.uint8)
        except (OSError, ValueError) as error:
            raise CropReadError(path, f"unsupported pixel format {mode} ({error})") from None
    if grey.ndim != 2:
        raise CropReadError(path, f"unsupported pixel layout {grey.shape}")
    if alpha is not None:
        # transparent pixels are background, and the background of a G-banded crop is white
        grey = grey.astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(grey)


def _stretch_high_depth(pixels: np.ndarray) -> np.ndarray:
    """16-bit, 32-bit and float crops to 8 bits, keeping the camera's own scale.

    Dividing by the bit depth the data actually uses (10, 12, 14 or 16 bits) keeps the
    crops of one camera comparable with each other, unlike a per-crop min-max stretch.
    """
    pixels = np.nan_to_num(pixels.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low = min(float(pixels.min()), 0.0)
    high = float(pixels.max())
    if high <= 1.0 and low >= 0.0:
        top = 1.0  # float image in [0, 1]
    elif low < 0.0:
        pixels = pixels - low
        top = max(float(pixels.max()), 1.0)
    else:
        top = next((2.0**bits - 1 for bits in (8, 10, 12, 14, 16) if high <= 2.0**bits - 1), high)
    return np.clip(np.rint(pixels * (255.0 / top)), 0, 255).astype(np.uint8)
