"""The crop loader fuzzed: damaged crop files are decoded or refused, naming the file.

The mutations are those of bench/fuzz_images.py, which runs thousands of them on real
crops in a worker process that survives a decoder crash; here a few hundred run
in-process on generated crops, seeded, in seconds. Below them, damaged files of the kinds
the fuzzer found raising something other than CropReadError.
"""

from __future__ import annotations

import importlib.util
import io
import pathlib
import struct
import sys
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from karyo_gui.core.images import CropReadError, read_crop

BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench" / "fuzz_images.py"


def load_bench():
    """bench/ is no package: load the script as a module (registered, for its dataclass)."""
    spec = importlib.util.spec_from_file_location("bench_fuzz_images", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fuzz = load_bench()


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's "Corrupt EXIF data" etc.
def test_mutated_crop_files_are_decoded_or_refused_naming_the_file(tmp_path):
    rng = np.random.default_rng(612)
    originals = fuzz.generated_crop_files(rng, count=2)  # 2 crops x 8 encodings
    outcomes: Counter[str] = Counter()
    for iteration in range(400):
        name, original = originals[int(rng.integers(len(originals)))]
        mutation, data = fuzz.mutate(original, rng)
        path = tmp_path / f"{iteration:03d} Zelle ü {name}"
        path.write_bytes(data)
        try:
            image = read_crop(path)
        except CropReadError as error:
            assert error.path == str(path)
            assert path.name in str(error), f"{mutation} of {name}: {error}"
            outcomes["refused"] += 1
        except Exception as error:  # the finding: fail with what made it
            pytest.fail(f"{mutation} of {name} raised {type(error).__name__}: {error}")
        else:
            assert image.dtype == np.uint8 and image.ndim == 2, f"{mutation} of {name}"
            outcomes["decoded"] += 1
        outcomes[mutation] += 1
    assert outcomes["decoded"] >= 20 and outcomes["refused"] >= 200
    assert all(outcomes[mutation] for mutation in fuzz.MUTATIONS if mutation != "zero length")


# --------------------------------------------------------------------------- found by it


def rod_crop() -> np.ndarray:
    crop = np.full((40, 16), 255, np.uint8)
    crop[4:36, 5:11] = 60
    crop[20, 5:11] = 150
    return crop


def tiff_bytes(*pages: Image.Image) -> bytes:
    buffer = io.BytesIO()
    pages[0].save(buffer, "TIFF", save_all=True, append_images=list(pages[1:]))
    return buffer.getvalue()


def directory_entry(data: bytes | bytearray, tag: int, directory: int | None = None) -> int:
    """Where the 12-byte entry of ``tag`` starts, in the first IFD or the one given."""
    assert data[:4] == b"II*\x00"  # Pillow writes little-endian TIFF
    if directory is None:
        directory = struct.unpack("<I", data[4:8])[0]
    (count,) = struct.unpack("<H", data[directory : directory + 2])
    for entry in range(directory + 2, directory + 2 + 12 * count, 12):
        if struct.unpack("<H", data[entry : entry + 2])[0] == tag:
            return entry
    raise AssertionError(f"no tag {tag} in the directory at {directory}")


def test_a_tiff_with_associated_alpha_reads_with_transparent_pixels_white(tmp_path):
    """ExtraSamples = 1 (premultiplied alpha) opens as mode La, which has no "A" band:
    getchannel("A") raised ValueError."""
    crop = rod_crop()
    alpha = np.full(crop.shape, 255, np.uint8)
    alpha[:, :3] = 0
    crop[:, :3] = 0  # premultiplied: a transparent pixel is stored as 0
    data = bytearray(tiff_bytes(Image.merge("LA", [Image.fromarray(crop),
                                                   Image.fromarray(alpha)])))
    extra_samples = directory_entry(data, 338)
    data[extra_samples + 8 : extra_samples + 10] = struct.pack("<H", 1)  # associated alpha
    path = tmp_path / "associated alpha.tif"
    path.write_bytes(data)
    assert Image.open(path).mode == "La"
    image = read_crop(path)
    assert np.all(image[:, :3] == 255)
    np.testing.assert_array_equal(image[:, 3:], crop[:, 3:])


def test_a_damaged_second_page_does_not_refuse_the_crop_on_the_first(tmp_path):
    """Counting the pages of a multi-page TIFF read the damaged second directory and
    raised TypeError ("Missing dimensions"); the first page is the crop."""
    crop = rod_crop()
    data = bytearray(tiff_bytes(Image.fromarray(crop), Image.fromarray(crop.T.copy())))
    first = struct.unpack("<I", data[4:8])[0]
    (count,) = struct.unpack("<H", data[first : first + 2])
    next_pointer = first + 2 + 12 * count
    second = struct.unpack("<I", data[next_pointer : next_pointer + 4])[0]
    for tag in (256, 257):  # the second page loses its width and height
        entry = directory_entry(data, tag, second)
        data[entry : entry + 2] = struct.pack("<H", 65000)
    path = tmp_path / "two pages.tif"
    path.write_bytes(data)
    np.testing.assert_array_equal(read_crop(path), crop)


def test_a_tiff_tag_of_the_wrong_type_is_refused_naming_the_file(tmp_path):
    """StripOffsets written as a double (NaN) made Pillow raise TypeError on load."""
    data = bytearray(tiff_bytes(Image.fromarray(rod_crop())))
    strip_offsets = directory_entry(data, 273)
    data[strip_offsets + 2 : strip_offsets + 12] = struct.pack("<HII", 12, 1, len(data))
    data += struct.pack("<d", float("nan"))
    path = tmp_path / "float offsets.tif"
    path.write_bytes(data)
    with pytest.raises(CropReadError, match=r"float offsets\.tif: corrupt or truncated"):
        read_crop(path)
