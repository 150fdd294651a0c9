"""Annotated metaphases: a whole metaphase image and a box (and type) for every chromosome.

Two formats are read:

* Pascal VOC (the cil24 layout): ``images/NAME.jpg`` beside ``annotations/NAME.xml``, one
  ``<object>`` per chromosome whose ``<name>`` is its type, written with or without the
  Denver group letter (``A1``, ``C7``, ``G21``, ``X``, ``Y``; also ``7``, ``chr7``);
* COCO JSON: ``images``, ``annotations`` (``bbox`` as x, y, width, height and/or
  ``segmentation`` polygons) and ``categories`` whose names are types.

An annotation is never trusted blindly: a box outside the image is clipped (and named),
an empty box or an unknown type name is skipped with a named problem, and the rest loads.
Only a file with nothing usable at all raises AnnotationError.
"""

from __future__ import annotations

import json
import math
import os
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from karyo_gui.core.case import Cell, Chromosome
from karyo_gui.core.images import IMAGE_SUFFIXES
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.loaders import CellLoadError, display_path, natural_key, read_cell_list
from karyo_gui.core.metaphase import (
    MetaphaseReadError,
    cut_crop,
    estimate_chromosome_width,
    foreground_mask,
    other_cuts,
    read_metaphase,
    regions_for_boxes,
)

MAX_ANNOTATION_BYTES = 50 * 1024 * 1024  # a metaphase's XML is a few kB; COCO of 10^4 images ~MB
MAX_OBJECTS = 500  # per metaphase: a near-tetraploid cell holds 92 chromosomes


class AnnotationError(Exception):
    """An annotation file with nothing usable; the message names the file and the reason."""


@dataclass(frozen=True)
class AnnotatedChromosome:
    """One annotated chromosome: its box in image pixels (x0, y0, x1, y1; x1, y1 exclusive),
    its type, and its outline where the annotation has one."""

    box: tuple[float, float, float, float]
    type: ChromosomeType
    polygon: tuple[tuple[float, float], ...] | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


@dataclass
class AnnotatedMetaphase:
    name: str
    image_path: Path
    width: int | None  # as the annotation states it; None when it does not
    height: int | None
    chromosomes: list[AnnotatedChromosome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def type_counts(self) -> dict[ChromosomeType, int]:
        counts: dict[ChromosomeType, int] = {}
        for chromosome in self.chromosomes:
            counts[chromosome.type] = counts.get(chromosome.type, 0) + 1
        return counts


_DENVER = re.compile(r"(?P<group>[a-g])(?P<number>\d{1,2})")


def type_from_annotation(name: str) -> ChromosomeType:
    """A type as annotations write it: ``A1``..``G22`` (Denver group + number), ``X``, ``Y``,
    or any name :meth:`ChromosomeType.from_name` reads. Raises ValueError otherwise, also
    when the group letter contradicts the number (``A7``)."""
    text = name.strip()
    match = _DENVER.fullmatch(text.lower())
    if match is not None:
        chromosome_type = ChromosomeType.from_name(match.group("number"))
        if chromosome_type.group.lower() != match.group("group"):
            raise ValueError(
                f"{name!r}: chromosome {chromosome_type.display_name} is in group "
                f"{chromosome_type.group}, not {match.group('group').upper()}"
            )
        return chromosome_type
    return ChromosomeType.from_name(text)


def clip_box(
    box: tuple[float, float, float, float], width: int | None, height: int | None
) -> tuple[tuple[float, float, float, float] | None, str | None]:
    """The box inside the image, and what was wrong with it (None when nothing was).

    Returns (None, reason) for a box that is empty, not finite or wholly outside."""
    x0, y0, x1, y1 = box
    if not all(math.isfinite(v) for v in box):
        return None, "box coordinates are not finite numbers"
    if x1 < x0 or y1 < y0:
        return None, f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has its corners swapped"
    problem = None
    if width is not None and height is not None:
        clipped = (max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height)))
        if clipped != (x0, y0, x1, y1):
            problem = (
                f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) reaches outside the "
                f"{width} x {height} image; clipped"
            )
        x0, y0, x1, y1 = clipped
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None, "box is empty (less than one pixel wide or high)"
    return (x0, y0, x1, y1), problem


def _read_text(path: Path) -> bytes:
    shown = display_path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise AnnotationError(f"{shown}: not a regular file")
        if size > MAX_ANNOTATION_BYTES:
            raise AnnotationError(
                f"{shown}: {size:,} bytes, more than an annotation file can be "
                f"({MAX_ANNOTATION_BYTES:,})"
            )
        with open(path, "rb") as handle:
            return handle.read(MAX_ANNOTATION_BYTES + 1)
    except FileNotFoundError:
        raise AnnotationError(f"{shown}: annotation file not found") from None
    except OSError as error:
        raise AnnotationError(f"{shown}: cannot read ({error.strerror or error})") from None


def _number(element: ElementTree.Element | None, tag: str) -> float | None:
    if element is None:
        return None
    child = element.find(tag)
    if child is None or child.text is None:
        return None
    try:
        value = float(child.text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None  # "nan", "inf": as good as missing


class _DoctypeRefused(Exception):
    pass


class _NoDoctype(ElementTree.TreeBuilder):
    """A tree builder that stops at a DOCTYPE (entities can only be declared in one)."""

    def doctype(self, name: str, pubid: str, system: str) -> None:
        raise _DoctypeRefused(name)


def read_voc(
    xml_path: str | os.PathLike, image_path: str | os.PathLike | None = None
) -> AnnotatedMetaphase:
    """One Pascal VOC annotation. ``image_path`` defaults to the cil24 layout
    (``../images/<name>.<ext>`` beside ``annotations/``, else the XML's ``<filename>``)."""
    xml_path = Path(xml_path)
    shown = display_path(xml_path)
    data = _read_text(xml_path)
    unsafe = f"{shown}: XML with a DOCTYPE or entities is not read (unsafe)"
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise AnnotationError(unsafe)
    try:
        # the bytes check above misses other encodings (UTF-16): the parser refuses too
        parser = ElementTree.XMLParser(target=_NoDoctype())
        parser.feed(data)
        root = parser.close()
    except _DoctypeRefused:
        raise AnnotationError(unsafe) from None
    except ElementTree.ParseError as error:
        raise AnnotationError(f"{shown}: not valid XML ({error})") from None
    if root.tag != "annotation":
        raise AnnotationError(f"{shown}: not a Pascal VOC annotation (root is <{root.tag}>)")
    size = root.find("size")
    width, height = _number(size, "width"), _number(size, "height")
    if width is not None and height is not None and (width < 1 or height < 1):
        width = height = None
    metaphase = AnnotatedMetaphase(
        name=xml_path.stem,
        image_path=Path(image_path) if image_path else _voc_image(xml_path, root),
        width=int(width) if width is not None and height is not None else None,
        height=int(height) if width is not None and height is not None else None,
    )
    objects = root.findall("object")
    if len(objects) > MAX_OBJECTS:
        raise AnnotationError(
            f"{shown}: {len(objects)} objects, more than one metaphase holds ({MAX_OBJECTS})"
        )
    for index, element in enumerate(objects, start=1):
        name_element = element.find("name")
        label = (name_element.text or "").strip() if name_element is not None else ""
        where = f"{shown}: object {index}"
        try:
            chromosome_type = type_from_annotation(label)
        except ValueError as error:
            metaphase.problems.append(f"{where}: unknown chromosome type ({error}); skipped")
            continue
        box_element = element.find("bndbox")
        corners = [_number(box_element, tag) for tag in ("xmin", "ymin", "xmax", "ymax")]
        if any(value is None for value in corners):
            metaphase.problems.append(f"{where} ({label}): no complete <bndbox>; skipped")
            continue
        box, problem = clip_box(tuple(corners), metaphase.width, metaphase.height)  # type: ignore[arg-type]
        if problem:
            metaphase.problems.append(
                f"{where} ({label}): {problem}" + ("" if box else "; skipped")
            )
        if box is not None:
            metaphase.chromosomes.append(AnnotatedChromosome(box, chromosome_type))
    return metaphase


def _voc_image(xml_path: Path, root: ElementTree.Element) -> Path:
    folder = xml_path.parent.parent / "images"
    for suffix in (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"):
        candidate = folder / f"{xml_path.stem}{suffix}"
        if candidate.exists():
            return candidate
    filename = root.findtext("filename")
    if filename:
        name = Path(filename.replace("\\", "/")).name
        for where in (folder, xml_path.parent):
            if (where / name).exists():
                return where / name
    return folder / f"{xml_path.stem}.jpg"


def read_coco(
    json_path: str | os.PathLike, images_folder: str | os.PathLike | None = None
) -> list[AnnotatedMetaphase]:
    """Every image of a COCO JSON file with its chromosomes (boxes and/or polygons).

    Image files are looked for in ``images_folder`` (default: ``images/`` beside the file,
    else the file's own folder)."""
    json_path = Path(json_path)
    shown = display_path(json_path)
    try:
        document = json.loads(_read_text(json_path))
    except (ValueError, RecursionError) as error:
        raise AnnotationError(f"{shown}: not valid JSON ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise AnnotationError(f"{shown}: not a COCO annotation file (no 'images' list)")
    folder = (
        Path(images_folder)
        if images_folder
        else (
            json_path.parent / "images"
            if (json_path.parent / "images").is_dir()
            else json_path.parent
        )
    )
    problems: list[str] = []
    categories: dict[object, ChromosomeType] = {}
    for category in document.get("categories") or []:
        if not isinstance(category, dict) or not _is_id(category.get("id")):
            problems.append(f"{shown}: a category without a valid id; skipped")
            continue
        try:
            categories[category.get("id")] = type_from_annotation(str(category.get("name", "")))
        except ValueError as error:
            problems.append(
                f"{shown}: category {category.get('id')!r}: {error}; its objects skipped"
            )
    metaphases: dict[object, AnnotatedMetaphase] = {}
    for image in document["images"]:
        if not isinstance(image, dict) or not isinstance(image.get("file_name"), str):
            problems.append(f"{shown}: an image entry without a file_name; skipped")
            continue
        if not _is_id(image.get("id")):
            problems.append(f"{shown}: image {image['file_name']!r} has no valid id; skipped")
            continue
        width, height = image.get("width"), image.get("height")
        sized = all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)
        )
        name = Path(image["file_name"].replace("\\", "/"))
        metaphases[image.get("id")] = AnnotatedMetaphase(
            name=name.stem,
            image_path=folder / name.name,
            width=width if sized else None,
            height=height if sized else None,
        )
    for index, annotation in enumerate(document.get("annotations") or [], start=1):
        where = f"{shown}: annotation {index}"
        if not isinstance(annotation, dict):
            problems.append(f"{where}: not an object; skipped")
            continue
        image_id = annotation.get("image_id")
        metaphase = metaphases.get(image_id) if _is_id(image_id) else None
        if metaphase is None:
            problems.append(f"{where}: refers to image {annotation.get('image_id')!r}, not listed")
            continue
        category_id = annotation.get("category_id")
        chromosome_type = categories.get(category_id) if _is_id(category_id) else None
        if chromosome_type is None:
            metaphase.problems.append(f"{where}: unknown category; skipped")
            continue
        if len(metaphase.chromosomes) >= MAX_OBJECTS:
            metaphase.problems.append(f"{where}: more than {MAX_OBJECTS} objects; skipped")
            continue
        polygon = _coco_polygon(annotation.get("segmentation"))
        box = _coco_box(annotation.get("bbox"), polygon)
        if box is None:
            metaphase.problems.append(f"{where}: neither a valid bbox nor a polygon; skipped")
            continue
        clipped, problem = clip_box(box, metaphase.width, metaphase.height)
        if problem:
            metaphase.problems.append(f"{where}: {problem}" + ("" if clipped else "; skipped"))
        if clipped is not None:
            metaphase.chromosomes.append(AnnotatedChromosome(clipped, chromosome_type, polygon))
    result = list(metaphases.values())
    if result and problems:
        result[0].problems[:0] = problems
    if not result:
        raise AnnotationError(
            f"{shown}: no images listed" + (f" ({problems[0]})" if problems else "")
        )
    return result


def _is_id(value: object) -> bool:
    """COCO ids are numbers or text; anything else (a list, an object) cannot be one."""
    return isinstance(value, int | float | str) and not isinstance(value, bool)


def _coco_polygon(segmentation: object) -> tuple[tuple[float, float], ...] | None:
    if not isinstance(segmentation, list) or not segmentation:
        return None
    ring = segmentation[0] if isinstance(segmentation[0], list) else segmentation
    try:
        values = [float(v) for v in ring]
    except (TypeError, ValueError):
        return None
    if len(values) < 6 or len(values) % 2 or not all(math.isfinite(v) for v in values):
        return None
    return tuple(zip(values[0::2], values[1::2]))


def _coco_box(bbox: object, polygon) -> tuple[float, float, float, float] | None:
    if isinstance(bbox, list) and len(bbox) == 4:
        try:
            x, y, w, h = (float(v) for v in bbox)
        except (TypeError, ValueError):
            x = y = w = h = math.nan
        if all(math.isfinite(v) for v in (x, y, w, h)):
            return (x, y, x + w, y + h)
    if polygon:
        xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
        return (min(xs), min(ys), max(xs), max(ys))
    return None


def is_annotated_folder(root: str | os.PathLike) -> bool:
    """Whether a folder has the cil24 layout: ``images/`` and ``annotations/`` side by side."""
    root = Path(root)
    return (root / "images").is_dir() and (root / "annotations").is_dir()


def load_annotated_folder(
    root: str | os.PathLike, names: list[str] | str | os.PathLike | None = None
) -> tuple[list[AnnotatedMetaphase], list[str]]:
    """The annotated metaphases of a cil24-style folder (VOC XMLs, or COCO ``*.json`` files in
    ``annotations/``), optionally limited to the names in a list or a list file such as
    ``splits/val.txt``. Returns them and the problems of files that could not be read."""
    root = Path(root)
    folder = root / "annotations"
    if not folder.is_dir():
        raise AnnotationError(f"{display_path(root)}: no annotations/ folder")
    if isinstance(names, str | os.PathLike):
        try:
            names = read_cell_list(names)
        except CellLoadError as error:
            raise AnnotationError(str(error)) from None
    wanted = None if names is None else set(names)
    problems: list[str] = []
    metaphases: list[AnnotatedMetaphase] = []
    try:
        files = sorted(folder.iterdir(), key=lambda p: natural_key(p.name))
    except OSError as error:
        raise AnnotationError(
            f"{display_path(folder)}: cannot list ({error.strerror or error})"
        ) from None
    for path in files:
        suffix = path.suffix.lower()
        try:
            if suffix == ".xml" and (wanted is None or path.stem in wanted):
                metaphases.append(read_voc(path))
            elif suffix == ".json":
                metaphases.extend(
                    m
                    for m in read_coco(path, root / "images")
                    if wanted is None or m.name in wanted
                )
        except AnnotationError as error:
            problems.append(str(error))
    if wanted is not None:
        missing = wanted - {m.name for m in metaphases}
        if missing:
            shown = ", ".join(sorted(missing, key=natural_key)[:5])
            problems.append(
                f"{len(missing)} listed metaphase(s) have no annotation file (e.g. {shown})"
            )
    for metaphase in metaphases:
        if metaphase.image_path.suffix.lower() not in IMAGE_SUFFIXES:
            metaphase.problems.append(
                f"{display_path(metaphase.image_path)}: not an image file type karyo reads"
            )
    if not metaphases:
        detail = f" ({problems[0]})" if problems else ""
        raise AnnotationError(f"{display_path(root)}: no annotated metaphases found{detail}")
    return metaphases, problems


def annotated_cell(metaphase: AnnotatedMetaphase, pixels: np.ndarray | None = None) -> Cell:
    """A cell of the crops cut from a metaphase's annotated boxes (given = annotated type),
    each box's own pixels with its neighbours whited out, as the finder's crops are cut (and,
    where it touches a neighbour, cut the other ways the classifier reads with it)."""
    grey = pixels if pixels is not None else read_metaphase(metaphase.image_path).pixels
    width = estimate_chromosome_width(grey)
    dark = foreground_mask(grey, width)
    boxes = [c.box for c in metaphase.chromosomes]
    regions = regions_for_boxes(dark, boxes, width)
    chromosomes = [
        Chromosome(id=f"b{index:03d}", image=cut_crop(grey, region), region=region,
                   given=annotated.type, other_cuts=[cut_crop(grey, cut) for cut in cuts])
        for index, (annotated, region, cuts) in enumerate(
            zip(metaphase.chromosomes, regions, other_cuts(dark, boxes, regions, width)), 1
        )
        if region is not None
    ]
    return Cell(name=metaphase.name, chromosomes=chromosomes, problems=list(metaphase.problems))


def load_annotated_cells(
    root: str | os.PathLike, names: list[str] | str | os.PathLike | None = None
) -> tuple[list[Cell], list[str]]:
    """The annotated metaphases of a cil24-style folder as cells of crops cut from their
    boxes (:func:`annotated_cell`), for training and measuring a classifier; with the
    problems of what could not be read (the rest loads)."""
    metaphases, problems = load_annotated_folder(root, names)
    cells = []
    for metaphase in metaphases:
        problems.extend(metaphase.problems)
        try:
            cell = annotated_cell(metaphase)
        except MetaphaseReadError as error:
            problems.append(str(error))
            continue
        cell.source = display_path(metaphase.image_path)
        if cell.chromosomes:
            cells.append(cell)
    return cells, problems
