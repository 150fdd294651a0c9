"""Annotated metaphases: VOC and COCO files are read as labs write them, and bad entries are
named and skipped while the rest loads."""

from __future__ import annotations

import json
import pathlib

import pytest

from karyo_gui.core.annotations import (
    AnnotationError,
    load_annotated_folder,
    read_coco,
    read_voc,
    type_from_annotation,
)
from karyo_gui.core.labels import ChromosomeType

T = ChromosomeType


def voc_xml(objects: list[tuple[str, tuple[float, float, float, float]]],
            width: int = 1000, height: int = 800, filename: str = "m1.jpg") -> str:
    parts = [
        "<annotation>",
        f"<filename>{filename}</filename>",
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
    ]
    for name, (x0, y0, x1, y1) in objects:
        parts.append(
            f"<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        )
    parts.append("</annotation>")
    return "\n".join(parts)


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- type names

@pytest.mark.parametrize(
    ("name", "expected"),
    [("A1", T.CHR1), ("B5", T.CHR5), ("C7", T.CHR7), ("c12", T.CHR12), ("D13", T.CHR13),
     ("E18", T.CHR18), ("F20", T.CHR20), ("G21", T.CHR21), ("G22", T.CHR22), ("X", T.X),
     ("Y", T.Y), ("7", T.CHR7), ("chr7", T.CHR7), (" A2 ", T.CHR2)],
)
def test_annotation_type_names(name, expected):
    assert type_from_annotation(name) is expected


@pytest.mark.parametrize("name", ["A7", "G1", "C21", "B3"])
def test_a_group_letter_contradicting_the_number_is_refused_by_name(name):
    with pytest.raises(ValueError, match="not " + name[0].upper()):
        type_from_annotation(name)


@pytest.mark.parametrize("name", ["", "Z", "A23", "chr26", "nucleus"])
def test_unknown_type_names_are_refused(name):
    with pytest.raises(ValueError):
        type_from_annotation(name)


# ---------------------------------------------------------------- Pascal VOC

def test_a_voc_file_is_read_with_every_type(tmp_path):
    names = ["A1", "A2", "B4", "C7", "D13", "E16", "F19", "G21", "G22", "X", "Y"]
    objects = [(name, (10.0 * i, 20.0, 10.0 * i + 8, 60.0)) for i, name in enumerate(names)]
    path = write(tmp_path / "annotations" / "m1.xml", voc_xml(objects))
    image = tmp_path / "images" / "m1.jpg"
    image.parent.mkdir()
    image.write_bytes(b"")  # only looked up, not read
    metaphase = read_voc(path)
    assert metaphase.name == "m1"
    assert metaphase.image_path == image
    assert (metaphase.width, metaphase.height) == (1000, 800)
    assert [c.type for c in metaphase.chromosomes] == [type_from_annotation(n) for n in names]
    assert metaphase.chromosomes[3].box == (30.0, 20.0, 38.0, 60.0)
    assert metaphase.problems == []
    assert metaphase.type_counts()[T.X] == 1


def test_voc_boxes_outside_the_image_are_clipped_and_named(tmp_path):
    path = write(tmp_path / "m.xml", voc_xml(
        [("A1", (-5, 10, 40, 50)), ("B4", (980, 700, 1030, 820)), ("C6", (100, 100, 130, 150))]
    ))
    metaphase = read_voc(path)
    boxes = [c.box for c in metaphase.chromosomes]
    assert boxes == [(0.0, 10.0, 40.0, 50.0), (980.0, 700.0, 1000.0, 800.0),
                     (100.0, 100.0, 130.0, 150.0)]
    assert len(metaphase.problems) == 2
    assert all("m.xml" in p and "clipped" in p for p in metaphase.problems)
    assert "object 1" in metaphase.problems[0] and "A1" in metaphase.problems[0]
    assert "object 2" in metaphase.problems[1]


def test_voc_bad_objects_are_skipped_by_name_and_the_rest_loads(tmp_path):
    path = write(tmp_path / "m.xml", voc_xml([
        ("A1", (10, 10, 40, 60)),
        ("A7", (50, 10, 80, 60)),  # group contradicts the number
        ("nucleus", (90, 10, 190, 110)),  # not a chromosome type
        ("B5", (200, 60, 230, 10)),  # corners swapped
        ("C8", (300, 10, 300.5, 60)),  # less than a pixel wide
        ("D14", (1200, 10, 1300, 60)),  # wholly outside the image
        ("Y", (400, 10, 420, 40)),
    ]))
    metaphase = read_voc(path)
    assert [c.type for c in metaphase.chromosomes] == [T.CHR1, T.Y]
    problems = metaphase.problems
    assert len(problems) == 5
    assert "object 2" in problems[0] and "group" in problems[0] and "skipped" in problems[0]
    assert "object 3" in problems[1] and "nucleus" in problems[1]
    assert "object 4" in problems[2] and "swapped" in problems[2]
    assert "object 5" in problems[3] and "empty" in problems[3]
    assert "object 6" in problems[4] and "skipped" in problems[4]


def test_voc_object_without_a_complete_box_is_skipped(tmp_path):
    text = voc_xml([("A1", (10, 10, 40, 60))]).replace(
        "</annotation>",
        "<object><name>A2</name><bndbox><xmin>1</xmin><ymin>oops</ymin>"
        "<xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>",
    )
    metaphase = read_voc(write(tmp_path / "m.xml", text))
    assert [c.type for c in metaphase.chromosomes] == [T.CHR1]
    assert "object 2" in metaphase.problems[0] and "bndbox" in metaphase.problems[0]


def test_a_voc_file_without_a_size_keeps_its_boxes_unclipped(tmp_path):
    text = "<annotation><object><name>X</name><bndbox><xmin>-3</xmin><ymin>4</ymin>" \
           "<xmax>30</xmax><ymax>40</ymax></bndbox></object></annotation>"
    metaphase = read_voc(write(tmp_path / "m.xml", text))
    assert metaphase.width is None and metaphase.height is None
    assert metaphase.chromosomes[0].box == (-3.0, 4.0, 30.0, 40.0)


@pytest.mark.parametrize(
    "text",
    [
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><annotation>&e;</annotation>',
        '<!DOCTYPE annotation SYSTEM "file:///etc/passwd"><annotation/>',
    ],
    ids=["entity", "doctype"],
)
def test_xml_with_a_doctype_or_entities_is_refused(tmp_path, text):
    with pytest.raises(AnnotationError, match=r"m\.xml.*(DOCTYPE|entities)"):
        read_voc(write(tmp_path / "m.xml", text))


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"this is not xml at all", "not valid XML"), (b"\xff\xfe\x00garbage", "not valid XML"),
     (b"<annotation><object>", "not valid XML"), (b"<html><body/></html>", "root is <html>")],
    ids=["text", "binary", "truncated", "other-xml"],
)
def test_a_file_that_is_not_a_voc_annotation_is_refused(tmp_path, content, expected):
    path = tmp_path / "m.xml"
    path.write_bytes(content)
    with pytest.raises(AnnotationError, match=expected) as raised:
        read_voc(path)
    assert "m.xml" in str(raised.value)


def test_a_missing_annotation_file_is_named(tmp_path):
    with pytest.raises(AnnotationError, match=r"gone\.xml.*not found"):
        read_voc(tmp_path / "gone.xml")


def test_a_voc_file_with_too_many_objects_is_refused(tmp_path):
    path = write(tmp_path / "m.xml", voc_xml([("A1", (1, 1, 5, 5))] * 501))
    with pytest.raises(AnnotationError, match="501 objects"):
        read_voc(path)


# ---------------------------------------------------------------- COCO

def coco_document() -> dict:
    return {
        "images": [
            {"id": 1, "file_name": "m1.png", "width": 500, "height": 400},
            {"id": 2, "file_name": "sub\\m2.png", "width": 600, "height": 300},
        ],
        "categories": [{"id": 1, "name": "A1"}, {"id": 2, "name": "X"},
                       {"id": 3, "name": "nucleus"}],
        "annotations": [
            {"image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40]},
            {"image_id": 1, "category_id": 2,
             "segmentation": [[100, 100, 140, 100, 140, 160, 100, 160]]},
            {"image_id": 2, "category_id": 1, "bbox": [580, 10, 40, 20]},  # reaches out
            {"image_id": 2, "category_id": 3, "bbox": [1, 1, 5, 5]},  # unknown category
            {"image_id": 9, "category_id": 1, "bbox": [1, 1, 5, 5]},  # image not listed
            {"image_id": 1, "category_id": 1},  # neither bbox nor polygon
        ],
    }


def test_coco_with_boxes_and_with_polygons_only(tmp_path):
    path = write(tmp_path / "coco.json", json.dumps(coco_document()))
    first, second = read_coco(path)
    assert first.name == "m1" and first.image_path == tmp_path / "m1.png"
    assert second.name == "m2" and second.image_path == tmp_path / "m2.png"
    box_only, polygon_only = first.chromosomes
    assert box_only.type is T.CHR1 and box_only.box == (10.0, 20.0, 40.0, 60.0)
    assert box_only.polygon is None
    assert polygon_only.type is T.X and polygon_only.box == (100.0, 100.0, 140.0, 160.0)
    assert polygon_only.polygon == ((100.0, 100.0), (140.0, 100.0), (140.0, 160.0),
                                    (100.0, 160.0))
    assert [c.box for c in second.chromosomes] == [(580.0, 10.0, 600.0, 30.0)]
    problems = first.problems + second.problems
    assert any("category 3" in p and "nucleus" in p for p in problems)
    assert any("annotation 3" in p and "clipped" in p for p in problems)
    assert any("annotation 4" in p and "unknown category" in p for p in problems)
    assert any("annotation 5" in p and "not listed" in p for p in problems)
    assert any("annotation 6" in p and "neither" in p for p in problems)
    assert all("coco.json" in p for p in problems)


@pytest.mark.parametrize(
    ("content", "expected"),
    [("not json", "not valid JSON"), ("[1, 2]", "no 'images' list"),
     ('{"images": []}', "no images listed"), ("[" * 100_000, "not valid JSON")],
    ids=["text", "list", "empty", "deep"],
)
def test_a_file_that_is_not_coco_is_refused(tmp_path, content, expected):
    with pytest.raises(AnnotationError, match=expected) as raised:
        read_coco(write(tmp_path / "c.json", content))
    assert "c.json" in str(raised.value)


# ---------------------------------------------------------------- the cil24 layout

def cil24_folder(root: pathlib.Path, names: list[str]) -> pathlib.Path:
    for name in names:
        write(root / "annotations" / f"{name}.xml",
              voc_xml([("A1", (10, 10, 40, 60)), ("X", (50, 10, 70, 50))], filename=f"{name}.jpg"))
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "images" / f"{name}.jpg").write_bytes(b"")
    return root


def test_load_annotated_folder_in_natural_order(tmp_path):
    root = cil24_folder(tmp_path / "cil24", ["m10", "m2", "m1"])
    write(root / "annotations" / "broken.xml", "<annotation>")
    metaphases, problems = load_annotated_folder(root)
    assert [m.name for m in metaphases] == ["m1", "m2", "m10"]
    assert metaphases[0].image_path == root / "images" / "m1.jpg"
    assert len(problems) == 1 and "broken.xml" in problems[0]


def test_load_annotated_folder_with_a_list_file_and_a_missing_name(tmp_path):
    root = cil24_folder(tmp_path / "cil24", ["m1", "m2", "m3"])
    listed = write(root / "splits" / "val.txt", "# validation\nm3\n\nm1  # a comment\nm9\n")
    metaphases, problems = load_annotated_folder(root, listed)
    assert [m.name for m in metaphases] == ["m1", "m3"]
    assert len(problems) == 1 and "1 listed" in problems[0] and "m9" in problems[0]
    metaphases, _ = load_annotated_folder(root, ["m2"])
    assert [m.name for m in metaphases] == ["m2"]


def test_load_annotated_folder_refuses_a_folder_without_annotations(tmp_path):
    with pytest.raises(AnnotationError, match="no annotations/ folder"):
        load_annotated_folder(tmp_path)
    root = cil24_folder(tmp_path / "cil24", ["m1"])
    with pytest.raises(AnnotationError, match="no annotated metaphases"):
        load_annotated_folder(root, ["other"])


def test_a_doctype_in_another_encoding_is_refused_too(tmp_path):
    text = ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY e "boom">]>'
            "<annotation><filename>&e;</filename></annotation>")
    path = tmp_path / "m.xml"
    path.write_bytes(text.encode("utf-16"))
    with pytest.raises(AnnotationError, match="DOCTYPE"):
        read_voc(path)


def test_voc_numbers_that_are_not_finite_count_as_missing(tmp_path):
    text = voc_xml([("A1", (10, 10, 40, 60))], width=1000).replace(
        "<width>1000</width>", "<width>nan</width>"
    ).replace("<xmin>10</xmin>", "<xmin>inf</xmin>")
    metaphase = read_voc(write(tmp_path / "m.xml", text))
    assert metaphase.width is None
    assert metaphase.chromosomes == [] and "bndbox" in metaphase.problems[0]


def test_coco_ids_that_cannot_be_ids_are_skipped_by_name(tmp_path):
    document = coco_document()
    document["images"].append({"id": [3], "file_name": "m3.png"})
    document["categories"].append({"id": {"a": 1}, "name": "Y"})
    document["annotations"].append({"image_id": [1], "category_id": 1, "bbox": [1, 1, 5, 5]})
    document["annotations"].append({"image_id": 1, "category_id": [2], "bbox": [1, 1, 5, 5]})
    metaphases = read_coco(write(tmp_path / "coco.json", json.dumps(document)))
    assert [m.name for m in metaphases] == ["m1", "m2"]
    assert len(metaphases[0].chromosomes) == 2
    problems = [p for m in metaphases for p in m.problems]
    assert any("m3.png" in p and "no valid id" in p for p in problems)
    assert any("category without a valid id" in p for p in problems)
    assert any("annotation 7" in p and "not listed" in p for p in problems)
    assert any("annotation 8" in p and "unknown category" in p for p in problems)


def test_a_missing_list_file_is_an_annotation_error(tmp_path):
    root = cil24_folder(tmp_path / "cil24", ["m1"])
    with pytest.raises(AnnotationError, match=r"nolist\.txt"):
        load_annotated_folder(root, root / "nolist.txt")
