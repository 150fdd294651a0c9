"""Properties that hold for every input: nothing a reviewer did is lost, nothing crashes.

Hypothesis generates the inputs: whole cases with any text in them, karyotypes of any
numerical complement, any probabilities and manual labels for the assignment, any bytes
for the crop decoder. The examples written out with ``@example`` are inputs that once
broke a property; they are tried on every run.
"""

from __future__ import annotations

import io
import math
import pathlib
import struct
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from karyo_gui.core.assignment import KaryotypePrior, assign_types, karyotype_of
from karyo_gui.core.case import (
    Case,
    Cell,
    CellStatus,
    Chromosome,
    Correction,
    Flag,
    ManualLabel,
    Orientation,
)
from karyo_gui.core.case_file import load_case, save_case
from karyo_gui.core.images import MAX_CROP_SIDE, MIN_CROP_SIDE, CropReadError, decode_crop
from karyo_gui.core.iscn import karyotype_string, parse_karyotype
from karyo_gui.core.labels import N_TYPES, ChromosomeType

T = ChromosomeType

# --------------------------------------------------------------------------- the case file

# What users type and file systems hold: accents, CJK, emoji, quotes, line breaks, NUL,
# and the lone surrogates Python makes of file names that are not valid UTF-8.
SPECIAL_TEXTS = [
    "", "Dr. Müller-Lüdenscheidt", "细胞 12", "🧬🔬 cell", 'says "46,XX"', "it's", "a\nb\r\n",
    "back\\slash", "nul\x00byte", "\u2028\u2029", "crop_\udcff.png", " ", "{\"json\": [1]}",
]
texts = st.sampled_from(SPECIAL_TEXTS) | st.text(
    st.characters(exclude_categories=()), max_size=24
)
zones = st.sampled_from(
    [None, timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)
moments = st.datetimes(datetime(1900, 1, 1), datetime(2200, 1, 1), timezones=zones)
labels = st.none() | st.sampled_from(ChromosomeType)
probabilities = st.none() | hnp.arrays(
    np.float32, N_TYPES, elements=st.floats(allow_nan=False, allow_infinity=False, width=32)
)
# a crop has MIN_CROP_SIDE px a side at least: the decoder refuses smaller (not a crop)
crops = hnp.arrays(
    np.uint8, st.tuples(st.integers(MIN_CROP_SIDE, 32), st.integers(MIN_CROP_SIDE, 32))
)
orientations = st.builds(Orientation, st.sampled_from(range(-360, 721, 90)), st.booleans())
# a folder name: anything but a separator or NUL
folder_names = st.text(
    st.characters(exclude_categories=(), exclude_characters="/\x00"), min_size=1, max_size=12
).filter(lambda name: name not in (".", ".."))
CASE_FOLDER = "<case folder>"  # replaced by the folder the case file is saved in


@st.composite
def chromosomes(draw) -> Chromosome:
    return Chromosome(
        id=draw(texts),
        image=draw(st.none() | crops | crops.map(np.rot90)),  # views too, as rotations make
        content_hash=draw(st.none() | st.text("0123456789abcdef", min_size=64, max_size=64)),
        given=draw(labels),
        predicted=draw(labels),
        probabilities=draw(probabilities),
        assigned=draw(labels),
        manual=draw(st.none() | st.builds(ManualLabel, st.sampled_from(T), texts, moments)),
        orientation=draw(orientations),
        flags=draw(st.sets(st.sampled_from(Flag))),
    )


@st.composite
def cells(draw) -> Cell:
    folders = draw(st.lists(folder_names, min_size=1, max_size=3))
    source = draw(st.sampled_from([None, CASE_FOLDER, "/archive"]))
    actions = st.sampled_from(["label", "orientation", "status"]) | texts
    status = draw(st.sampled_from(CellStatus))
    cell = Cell(
        name=draw(texts),
        chromosomes=draw(st.lists(chromosomes(), max_size=4, unique_by=lambda c: c.id)),
        source=None if source is None else "/".join([source, *folders]),
        status=CellStatus.REVIEWED if status is CellStatus.SIGNED_OFF else status,
        model_id=draw(st.none() | texts),
        audit=draw(
            st.lists(st.builds(Correction, texts, actions, texts, texts, texts, moments),
                     max_size=4)
        ),
    )
    if status is CellStatus.SIGNED_OFF:  # as karyo signs off: recorded, with its digest
        cell.set_status(status, by=draw(texts))
    return cell


cases = st.builds(
    Case,
    case_id=texts,
    cells=st.lists(cells(), max_size=3),
    created=moments,
    notes=texts | st.text(st.characters(exclude_categories=()), max_size=400),
)


def placed_in(case: Case, folder: pathlib.Path) -> Case:
    """The case with its cell folders below ``folder`` where the strategy said so."""
    for cell in case.cells:
        if cell.source is not None and cell.source.startswith(CASE_FOLDER):
            cell.source = str(folder) + cell.source[len(CASE_FOLDER) :]
    return case


def assert_same_chromosome(loaded: Chromosome, saved: Chromosome) -> None:
    assert loaded.id == saved.id
    assert loaded.source_path is None
    assert loaded.content_hash == saved.content_hash
    for name in ("given", "predicted", "assigned", "manual", "orientation"):
        assert getattr(loaded, name) == getattr(saved, name), name
    assert loaded.label is saved.label
    # image_missing / image_changed are re-checked on load, never taken from the file
    assert loaded.flags == saved.flags - {Flag.IMAGE_MISSING, Flag.IMAGE_CHANGED}
    if saved.probabilities is None:
        assert loaded.probabilities is None
    else:
        # the writer rounds to 6 decimals; float32 keeps 24 bits of what is left
        assert loaded.probabilities.dtype == np.float32
        np.testing.assert_allclose(loaded.probabilities, saved.probabilities,
                                   rtol=2.0**-23, atol=5.01e-7)
    if saved.image is None:
        assert loaded.image is None
    else:
        assert loaded.image.dtype == np.uint8
        np.testing.assert_array_equal(loaded.image, saved.image)


@settings(max_examples=60, deadline=None)
@given(case=cases)
def test_a_saved_case_loads_back_unchanged(case):
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder).resolve()
        case = placed_in(case, folder)
        path = folder / "case.karyo.json"
        save_case(case, path)
        loaded = load_case(path)
    assert (loaded.case_id, loaded.notes, loaded.created) == (
        case.case_id, case.notes, case.created
    )
    assert len(loaded.cells) == len(case.cells)
    for cell, saved in zip(loaded.cells, case.cells):
        assert (cell.name, cell.source, cell.status, cell.model_id) == (
            saved.name, saved.source, saved.status, saved.model_id
        )
        assert cell.audit == saved.audit
        assert cell.problems == []
        assert len(cell.chromosomes) == len(saved.chromosomes)
        for chromosome, saved_chromosome in zip(cell.chromosomes, saved.chromosomes):
            assert_same_chromosome(chromosome, saved_chromosome)
        assert cell.karyotype == saved.karyotype


# --------------------------------------------------------------------------- ISCN


@st.composite
def label_counts(draw) -> dict[ChromosomeType, int]:
    """Counts of a cell's labels: 0-4 of each autosome, 0-4 X, 0-3 Y, 0-12 markers,
    in any order and with zero counts present, as a plain mapping."""
    counts = {T.autosome(number): draw(st.integers(0, 4)) for number in range(1, 23)}
    counts[T.X] = draw(st.integers(0, 4))
    counts[T.Y] = draw(st.integers(0, 3))
    counts[T.UNCLASSIFIED] = draw(st.integers(0, 12))
    return dict(draw(st.permutations(list(counts.items()))))


@settings(max_examples=300, deadline=None)
@given(counts=label_counts())
@example(counts={T.autosome(n): 0 for n in range(1, 23)})  # nothing at all: "0,-1,-1,..."
@example(counts={T.Y: 1, T.UNCLASSIFIED: 1})  # a Y without an X, a lone marker
def test_a_built_karyotype_parses_back_to_its_counts(counts):
    text = karyotype_string(counts)
    fields = text.split(",")
    assert int(fields[0]) == sum(counts.values())
    assert parse_karyotype(text) == Counter({t: n for t, n in counts.items() if n})
    assert karyotype_string(parse_karyotype(text)) == text  # one way to write a karyotype
    sex = "X" * counts.get(T.X, 0) + "Y" * counts.get(T.Y, 0)
    assert (fields[1] if len(fields) > 1 and set(fields[1]) <= {"X", "Y"} else "") == sex


# --------------------------------------------------------------------------- assignment

_ROW_KINDS = ("dirichlet", "peaked", "one-hot", "uniform", "tiny", "underflow", "zero")


def probability_row(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One crop's classifier output, normalised, from sensible to degenerate."""
    top = int(rng.integers(N_TYPES))
    if kind == "dirichlet":
        row = rng.dirichlet(np.full(N_TYPES, rng.uniform(0.05, 2.0)))
    elif kind == "peaked":
        row = rng.dirichlet(np.ones(N_TYPES))
        row[top] += rng.uniform(1.0, 50.0)
    elif kind == "one-hot":
        row = np.zeros(N_TYPES)
        row[top] = 1.0
    elif kind == "uniform":
        row = np.ones(N_TYPES)
    elif kind == "tiny":  # one type, the others at the smallest float there is
        row = np.full(N_TYPES, 5e-324)
        row[top] = 1.0
    elif kind == "underflow":  # all values subnormal before normalising
        row = rng.uniform(0.0, 1.0, N_TYPES) * 1e-310
    else:  # a crop the classifier gives nothing: allowed (finite, not negative)
        return np.zeros(N_TYPES)
    return row / row.sum()


@st.composite
def cells_to_assign(draw) -> tuple[np.ndarray, dict[int, int], KaryotypePrior | None]:
    n = draw(st.integers(0, 60))
    kinds = draw(st.lists(st.sampled_from(_ROW_KINDS), min_size=n, max_size=n))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    matrix = np.array([probability_row(kind, rng) for kind in kinds]).reshape(n, N_TYPES)
    types = st.integers(0, N_TYPES - 1)
    if n and draw(st.booleans()):
        # a reviewer's label on many crops of one type, often more than a normal cell holds
        crops_fixed = rng.permutation(n)[: draw(st.integers(1, n))]
        fixed = dict.fromkeys(crops_fixed.tolist(), draw(types))
    else:
        fixed = draw(st.dictionaries(st.integers(0, max(n - 1, 0)), types, max_size=n))
    rate = st.floats(1e-6, 0.99)
    prior = draw(st.none() | st.builds(KaryotypePrior, loss=rate, gain=rate,
                                       female=st.floats(0.01, 0.99)))
    return matrix, fixed, prior


def slots(n: int, copies_of_x: int, fixed: dict[int, int]) -> np.ndarray:
    """How many crops of each type a sex baseline can take (see assignment.py): the
    expected copies plus ``extra`` more, and every crop a reviewer fixed to the type."""
    expected = np.full(N_TYPES, 2)
    expected[T.X] = copies_of_x
    expected[T.Y] = 2 - copies_of_x
    extra = 2 + max(0, math.ceil((n - int(expected.sum())) / N_TYPES))
    fixed_counts = np.bincount(list(fixed.values()), minlength=N_TYPES)
    return np.maximum(expected + extra, fixed_counts)


@settings(max_examples=150, deadline=None)
@given(cell=cells_to_assign())
# eight crops a reviewer called 21: more than the four slots of 21; they were moved away
@example(cell=(np.full((8, N_TYPES), 1 / N_TYPES), dict.fromkeys(range(8), 20), None))
# three fixed 1s in a confident 46,XY: the third copy's gain cost more than overruling it
@example(cell=(np.eye(N_TYPES)[[0, 0, 1, 1, 2, 2]], {2: 0, 3: 0, 4: 0}, None))
def test_every_crop_gets_one_type_within_the_slots_and_fixed_labels_stay(cell):
    matrix, fixed, prior = cell
    n = len(matrix)
    assignment = assign_types(matrix, prior, fixed)
    assert assignment.types.shape == (n,)
    assert np.all((assignment.types >= 0) & (assignment.types < N_TYPES))
    for index, chromosome_type in fixed.items():
        assert assignment.types[index] == chromosome_type, f"crop {index} lost its label"
    counts = np.bincount(assignment.types, minlength=N_TYPES)
    assert any(np.all(counts <= slots(n, copies_of_x, fixed)) for copies_of_x in (2, 1))
    assert assignment.karyotype == karyotype_of(assignment.types)
    assert parse_karyotype(assignment.karyotype).total() == n
    assert math.isfinite(assignment.cost) and assignment.cost <= assignment.alternative_cost
    assert np.array_equal(assignment.predicted, matrix.argmax(axis=1))
    again = assign_types(matrix.copy(), prior, dict(fixed))
    assert np.array_equal(again.types, assignment.types)
    assert (again.karyotype, again.cost, again.alternative) == (
        assignment.karyotype, assignment.cost, assignment.alternative
    )
    np.testing.assert_array_equal(again.margins, assignment.margins)


# --------------------------------------------------------------------------- crop decoding

NAME = "cell 7/crop 12.tif"


def assert_decoded_or_refused(data: bytes) -> None:
    """A 2-D uint8 crop within the size limits, or CropReadError naming the file."""
    try:
        image = decode_crop(data, NAME)
    except CropReadError as error:
        assert error.path == NAME
        assert NAME in str(error) and error.reason
        return
    assert isinstance(image, np.ndarray)
    assert image.dtype == np.uint8 and image.ndim == 2
    assert min(image.shape) >= MIN_CROP_SIDE and max(image.shape) <= MAX_CROP_SIDE


MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"BM", b"\xff\xd8\xff",
         b"GIF89a", b"RIFF", b"P5\n"]


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's "Corrupt EXIF data" etc.
@settings(max_examples=300, deadline=None)
@given(magic=st.sampled_from(MAGIC), body=st.binary(max_size=2048))
def test_any_bytes_decode_or_are_refused(magic, body):
    assert_decoded_or_refused(magic + body)


KINDS = ["png", "tiff", "tiff16", "tiff-alpha", "tiff-pages", "bmp", "jpeg"]


def encoded(crop: np.ndarray, kind: str) -> bytes:
    grey = Image.fromarray(crop)
    buffer = io.BytesIO()
    if kind == "png":
        grey.save(buffer, "PNG")
    elif kind == "tiff":
        grey.save(buffer, "TIFF", compression="tiff_lzw")
    elif kind == "tiff16":
        Image.fromarray(crop.astype(np.uint16) * 257).save(buffer, "TIFF")
    elif kind == "tiff-alpha":
        alpha = Image.fromarray(np.where(crop > 200, 0, 255).astype(np.uint8))
        Image.merge("LA", (grey, alpha)).save(buffer, "TIFF", compression="tiff_lzw")
    elif kind == "tiff-pages":  # a multi-page TIFF: the first page is the crop
        grey.save(buffer, "TIFF", save_all=True, append_images=[grey.transpose(0)])
    elif kind == "bmp":
        grey.save(buffer, "BMP")
    else:
        grey.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def at(fraction: float, data: bytearray) -> int:
    return min(int(fraction * len(data)), max(len(data) - 1, 0))


fractions = st.floats(0.0, 1.0)
edits = st.lists(
    st.one_of(
        st.tuples(st.just("flip"), fractions, st.integers(0, 7)),
        st.tuples(st.just("truncate"), fractions),
        st.tuples(st.just("insert"), fractions, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("delete"), fractions, st.integers(1, 64)),
        st.tuples(st.just("duplicate"), fractions, st.integers(1, 256)),
        st.tuples(st.just("header"), st.integers(0, 63), st.integers(0, 255)),
        # a 16- or 32-bit field of the header set to any value: sizes, offsets, counts
        st.tuples(st.just("field"), st.integers(0, 60), st.sampled_from(["<H", ">H", "<I", ">I"]),
                  st.integers(0, 2**32 - 1)),
        # one entry of the first TIFF directory: its type, count or value
        st.tuples(st.just("tag"), fractions, st.sampled_from(["type", "count", "value"]),
                  st.integers(0, 16) | st.integers(0, 2**32 - 1)),
    ),
    min_size=1,
    max_size=4,
)


def edited(data: bytes, changes: list[tuple]) -> bytes:
    mutated = bytearray(data)
    for kind, *arguments in changes:
        if not mutated:
            break
        if kind == "flip":
            mutated[at(arguments[0], mutated)] ^= 1 << arguments[1]
        elif kind == "truncate":
            del mutated[at(arguments[0], mutated) :]
        elif kind == "insert":
            where = at(arguments[0], mutated)
            mutated[where:where] = arguments[1]
        elif kind == "delete":
            where = at(arguments[0], mutated)
            del mutated[where : where + arguments[1]]
        elif kind == "duplicate":
            where = at(arguments[0], mutated)
            mutated[where:where] = mutated[where : where + arguments[1]]
        elif kind == "header":
            mutated[arguments[0] % len(mutated)] = arguments[1]
        elif kind == "field":
            where, layout, value = arguments
            packed = struct.pack(layout, value % 256 ** struct.calcsize(layout))
            mutated[where : where + len(packed)] = packed
        else:
            edit_tiff_entry(mutated, *arguments)
    return bytes(mutated)


def edit_tiff_entry(data: bytearray, fraction: float, part: str, value: int) -> None:
    """Set the type, count or value of one entry of the first IFD (nothing if not a TIFF)."""
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(bytes(data[:4]))
    if order is None or len(data) < 8:
        return
    directory = struct.unpack(order + "I", data[4:8])[0]
    if directory + 2 > len(data):
        return
    entries = struct.unpack(order + "H", data[directory : directory + 2])[0]
    entry = directory + 2 + 12 * min(int(fraction * entries), max(entries - 1, 0))
    offset, layout = {"type": (2, "H"), "count": (4, "I"), "value": (8, "I")}[part]
    if entry + offset + struct.calcsize(layout) <= len(data):
        packed = struct.pack(order + layout, value % 256 ** struct.calcsize(layout))
        data[entry + offset : entry + offset + len(packed)] = packed


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=400, deadline=None)
@given(
    crop=crops,
    kind=st.sampled_from(KINDS),
    changes=edits,
)
# a 16-bit TIFF with one tag retyped to 64 bits: an offset too large for Pillow to seek to
@example(crop=np.full((3, 3), 128, np.uint8), kind="tiff16", changes=[("tag", 0.625, "type", 16)])
def test_a_damaged_crop_file_decodes_or_is_refused(crop, kind, changes):
    assert_decoded_or_refused(edited(encoded(crop, kind), changes))


@pytest.mark.parametrize("kind", KINDS)
def test_the_undamaged_encodings_decode(kind):
    crop = np.random.default_rng(3).integers(0, 256, (20, 9), dtype=np.uint8)
    image = decode_crop(encoded(crop, kind), NAME)
    assert image.shape == crop.shape
    if kind == "tiff-alpha":  # transparent where the crop is light: background, white
        crop = np.where(crop > 200, 255, crop)
    if kind != "jpeg":
        np.testing.assert_array_equal(image, crop)
