"""Reading chromosome crop files into 8-bit greyscale arrays.

Crops arrive as png, tif/tiff (LZW, 16-bit, grey+alpha), bmp or jpg. Whatever the file,
the result is a 2-D uint8 array with dark bands on a light background; transparent
pixels become background (white). Every failure raises CropReadError naming the file and
the reason in words a user can act on.

Pillow reads them; an uncompressed TIFF it calls truncated (some export tools write a strip
table that disagrees with itself: StripByteCounts and RowsPerStrip naming one strip while
StripOffsets lists several, ASCII tags without their NUL) is read again by libtiff, through
OpenCV, which recovers such files, before it is refused.

Only regular files are read (a FIFO, ``/dev/zero`` or ``/dev/urandom`` named as a crop is
refused without reading a byte: checked before the open, opened non-blocking, checked again
on the open file), at most MAX_CROP_BYTES of them. What decoding may cost is bounded before
any pixel is decoded, from the image's header: MAX_CROP_PIXELS per crop, and a
:class:`PixelBudget` per cell (MAX_CELL_PIXELS) and per case (MAX_CASE_PIXELS) that the
loaders pass in. A JPEG with more than MAX_JPEG_SEGMENTS metadata segments is refused before
Pillow reads them (Pillow joins Exif segments by copying: quadratic in their number).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg"})
MAX_CROP_SIDE = 4096  # the largest real crops are ~100 x 200 px; this is a whole slide
MIN_CROP_SIDE = 3
# Budgets. gband612's crops are at most ~7,500 px (about 60 x 120) and a whole cell of them
# about 0.1 megapixels; chromosome 1 photographed at 0.02 um a pixel is still ~500 x 150 px.
# The limits lie far above any lab's crops and far below what exhausts a workstation's memory
# (decoded crops are 1 byte a pixel, and decoding a colour or 16-bit image needs a few more).
MAX_CROP_PIXELS = 4_000_000  # one crop (2000 x 2000): 500 times the largest gband612 crop
MAX_CELL_PIXELS = 100_000_000  # one cell: 46 crops of 2 megapixels each, 1,000 gband612 cells
MAX_CASE_PIXELS = 1_000_000_000  # one case: 1 GB of grey crops; all of gband612 is ~40 MP
MAX_CROP_BYTES = 64 * 2**20  # a 4-megapixel crop as uncompressed 16-bit RGBA TIFF is 32 MiB
MAX_JPEG_SEGMENTS = 64  # metadata (APPn, COM) segments before the image data; real ones: < 10
MAX_JPEG_JUNK = 64 * 1024  # padding bytes between a JPEG's segments (real files: none or a few)
MAX_JPEG_HEADER_BYTES = 8 * 2**20  # a JPEG's metadata: 64 segments of 64 kB are 4 MiB


class CropReadError(Exception):
    """A crop file that cannot be used; ``str()`` names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        # the message must print anywhere: a name that is not valid UTF-8 is shown with U+FFFD
        shown = os.fsencode(self.path).decode("utf-8", errors="replace")
        super().__init__(f"{shown}: {reason}")


class PixelBudgetExceeded(CropReadError):
    """A crop not decoded because its cell's or its case's crops would pass their budget."""


class PixelBudget:
    """Decoded pixels a cell or a case may still take; ``take`` is checked with the size
    from an image's header, before its pixels are decoded. A cell's budget has its case's
    as ``parent``: a crop must fit both. Thread-safe (the cells of a folder load in
    parallel); once a ``take`` has been refused, ``refused`` tells the loaders to stop."""

    def __init__(self, limit: int, scope: str, parent: PixelBudget | None = None,
                 contents: str = "crops") -> None:
        self.limit = int(limit)
        self.scope = scope  # "cell" or "case", as the message says it
        self.contents = contents  # "crops" or "images": what is decoded, as the message says
        self.parent = parent
        self.used = 0
        self.refused = False
        self._lock = parent._lock if parent is not None else threading.Lock()

    @classmethod
    def for_case(cls) -> PixelBudget:
        return cls(MAX_CASE_PIXELS, "case")

    @classmethod
    def for_cell(cls, case: PixelBudget | None = None) -> PixelBudget:
        return cls(MAX_CELL_PIXELS, "cell", case)

    def _chain(self) -> list[PixelBudget]:
        chain, budget = [], self
        while budget is not None:
            chain.append(budget)
            budget = budget.parent
        return chain

    @property
    def exhausted(self) -> PixelBudget | None:
        """This budget or the first of its parents that has refused a crop, or None."""
        return next((budget for budget in self._chain() if budget.refused), None)

    def message(self, contents: str | None = None) -> str:
        return (f"not read: the {contents or self.contents} of this {self.scope} would pass "
                f"{self.limit / 1e6:,g} megapixels in all, the most karyo decodes for one "
                f"{self.scope} (a real {self.scope} holds far less)")

    def take(self, path: str | os.PathLike, pixels: int) -> None:
        with self._lock:
            chain = self._chain()
            for budget in chain:
                if budget.used + pixels > budget.limit:
                    budget.refused = True
                    raise PixelBudgetExceeded(path, budget.message())
            for budget in chain:
                budget.used += pixels

    def give_back(self, pixels: int) -> None:
        with self._lock:
            for budget in self._chain():
                budget.used -= pixels


def is_dark_background(image: np.ndarray) -> bool:
    """True for crops whose background is dark (Q-banding, or already inverted)."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return float(np.median(border)) < 128


class NotRegularFileError(OSError):
    """A device, FIFO or socket where a file was expected."""


class FileTooLargeError(OSError):
    """A file larger than its reader reads; ``size`` is at least the bytes found."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(errno.EFBIG, f"file is {size:,} bytes, more than {limit:,}")
        self.size, self.limit = size, limit


def open_regular_file(path: str | os.PathLike) -> io.BufferedReader:
    """``path`` opened for reading only when it is a regular file (symlinks followed).

    A FIFO, a device (``/dev/zero``, ``/dev/urandom``) or a socket raises
    NotRegularFileError before it is opened; a folder IsADirectoryError. The open is
    non-blocking, and the opened file is checked again, so a FIFO swapped in after the
    check cannot block either. Other failures raise the OSError the system gives.
    """
    _require_regular(os.stat(path), path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    descriptor = os.open(path, flags | getattr(os, "O_BINARY", 0))
    try:
        _require_regular(os.fstat(descriptor), path)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _require_regular(info: os.stat_result, path: str | os.PathLike) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a folder", os.fspath(path))
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFileError(errno.EINVAL, "not a regular file", os.fspath(path))


def read_regular_file(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The bytes of the regular file at ``path`` (see ``open_regular_file``); more than
    ``limit`` bytes raise FileTooLargeError, and no more than ``limit + 1`` are read (a
    file growing while it is read included)."""
    with open_regular_file(path) as handle:
        if limit is None:
            return handle.read()
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise FileTooLargeError(size, limit)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileTooLargeError(len(data), limit)
    return data


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def read_crop(path: str | os.PathLike, budget: PixelBudget | None = None) -> np.ndarray:
    """The crop at ``path`` as a 2-D uint8 array (dark bands on light background)."""
    data = _read_bytes(path, MAX_CROP_BYTES)
    return decode_crop(data, path, budget)


def read_crop_and_hash(path: str | os.PathLike, budget: PixelBudget | None = None
                       ) -> tuple[np.ndarray, str]:
    """The crop and the content hash of its file, from a single read."""
    data = _read_bytes(path, MAX_CROP_BYTES)
    return decode_crop(data, path, budget), content_hash(data)


def content_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_hash(path: str | os.PathLike) -> str:
    return content_hash(_read_bytes(path, MAX_CROP_BYTES))


def _read_bytes(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The bytes of an image file (regular files only, at most ``limit`` of them); every
    failure a CropReadError in words (the metaphase reader says them as its own)."""
    try:
        data = read_regular_file(path, limit)
    except FileNotFoundError:
        raise CropReadError(path, "file not found (moved or deleted?)") from None
    except PermissionError:
        raise CropReadError(path, "permission denied: cannot read this file") from None
    except IsADirectoryError:
        raise CropReadError(path, "is a folder, not an image file") from None
    except NotRegularFileError:
        raise CropReadError(path, "not a regular file (a device, a pipe or a socket); not "
                                  "read") from None
    except FileTooLargeError as error:
        raise CropReadError(path, f"file is {error.size:,} bytes, more than karyo reads for "
                                  f"one image (at most {error.limit / 2**20:,.0f} MiB)"
                            ) from None
    except OSError as error:
        raise CropReadError(path, f"cannot read file ({error.strerror or error})") from None
    if not data:
        raise CropReadError(path, "empty file (0 bytes)")
    return data


def decode_crop(data: bytes, path: str | os.PathLike = "<memory>",
                budget: PixelBudget | None = None) -> np.ndarray:
    """The crop encoded in ``data`` (see ``read_crop``). Its size is checked from the header,
    and taken from ``budget``, before its pixels are decoded; a crop that then fails to
    decode gives its pixels back."""
    if data[:3] == b"\xff\xd8\xff":
        _check_jpeg_segments(data, path)
    taken: list[int] = []

    def take(pixels: int) -> None:
        if budget is not None:
            budget.take(path, pixels)
            taken.append(pixels)

    try:
        return _decode(data, path, take)
    except BaseException:
        if budget is not None:
            for pixels in taken:
                budget.give_back(pixels)
        raise


def _decode(data: bytes, path: str | os.PathLike, take: Callable[[int], None]) -> np.ndarray:
    checked = None  # the image once Pillow has read its header and its size is fine
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            _check_size(path, width, height)
            take(width * height)
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
            return recovered  # of the size taken above
        raise CropReadError(path, f"corrupt or truncated image ({error})") from None
    return _to_grey8(image, path)


_FILL_BYTES = re.compile(rb"\xff+")
_JUNK_BYTES = re.compile(rb"[^\xff]+")


def jpeg_header_problem(data: bytes) -> str | None:
    """Why Pillow must not be given this JPEG's header, or None.

    Pillow reads the segments before the image data one by one in Python, joins Exif
    segments by copying (quadratic in their number: 1,000 took 30 s) and steps over padding
    a byte at a time (4 MB of it took 4 s). One linear walk over the segment lengths counts
    them first: more than MAX_JPEG_SEGMENTS metadata segments, more than MAX_JPEG_JUNK bytes
    of padding, or no image data in the first MAX_JPEG_HEADER_BYTES, is refused. ``data``
    may be the start of a file only (a header read for its size)."""
    return _jpeg_walk(data)[0]


def _jpeg_walk(data: bytes) -> tuple[str | None, bool]:
    """``jpeg_header_problem``'s answer, and whether the walk reached the image data (or
    the end of the image): False when ``data`` ended first."""
    position, segments, junk, end = 2, 0, 0, len(data)
    while position < end:
        if segments > MAX_JPEG_SEGMENTS:
            return (f"JPEG with more than {MAX_JPEG_SEGMENTS} metadata segments (Exif, "
                    "APPn, comments) before its image data; a real crop has a few: crafted "
                    "or damaged?"), True
        if junk > MAX_JPEG_JUNK:
            return (f"JPEG with more than {MAX_JPEG_JUNK:,} bytes of padding or junk "
                    "between its segments: crafted or damaged?"), True
        if position > MAX_JPEG_HEADER_BYTES:
            return (f"JPEG with more than {MAX_JPEG_HEADER_BYTES / 2**20:g} MiB of metadata "
                    "before its image data: crafted or damaged?"), True
        if data[position] != 0xFF:  # junk, which Pillow skips
            after = _JUNK_BYTES.match(data, position).end()
            junk, position = junk + after - position, after
            continue
        marker_at = _FILL_BYTES.match(data, position).end()  # the byte after the 0xFF run
        junk += marker_at - position - 1
        if marker_at >= end:
            return None, False
        marker = data[marker_at]
        if marker in (0xD9, 0xDA):  # end of image, start of the image data
            return None, True
        if marker in (0x00, 0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length follows
            position = marker_at + 1
            continue
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            segments += 1
        if marker_at + 3 > end:
            return None, False
        position = marker_at + 1 + ((data[marker_at + 1] << 8) | data[marker_at + 2])
    if position > MAX_JPEG_HEADER_BYTES:  # the last segment reaches past the limit
        return (f"JPEG with more than {MAX_JPEG_HEADER_BYTES / 2**20:g} MiB of metadata "
                "before its image data: crafted or damaged?"), True
    return None, False


def _check_jpeg_segments(data: bytes, path: str | os.PathLike) -> None:
    problem = jpeg_header_problem(data)
    if problem is not None:
        raise CropReadError(path, problem)


def image_header_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the header of the image file at ``path``, its pixels not
    decoded; regular files only, a JPEG's header checked first (``jpeg_header_problem``).
    OSError (NotRegularFileError...), CropReadError, DecompressionBombError or Pillow's own
    errors when it cannot be read."""
    with open_regular_file(path) as handle, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        start, wanted = b"", 64 * 1024  # a JPEG's header is read only as far as it goes
        while True:
            start += handle.read(wanted - len(start))
            if start[:3] != b"\xff\xd8\xff":
                break
            problem, complete = _jpeg_walk(start)
            if problem is not None:
                raise CropReadError(path, problem)
            if complete or len(start) < wanted or wanted > MAX_JPEG_HEADER_BYTES:
                break
            wanted = min(4 * wanted, MAX_JPEG_HEADER_BYTES + 2)
        handle.seek(0)
        with Image.open(handle) as image:
            width, height = image.size
    return int(width), int(height)


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
    if width * height > MAX_CROP_PIXELS:
        raise CropReadError(
            path,
            f"image is {width} x {height} px ({width * height / 1e6:,.1f} megapixels), "
            f"larger than a chromosome crop can be (at most {MAX_CROP_PIXELS / 1e6:g} "
            "megapixels); is it a whole metaphase image?",
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
