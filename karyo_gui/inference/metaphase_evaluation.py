"""Measuring the whole pipeline on annotated metaphases: image in, assigned karyogram out.

For every annotated metaphase (the cil24 layout: ``images/`` + ``annotations/``) the finder
finds the chromosomes (and faint candidates), the classifier types them and the
karyotype-aware assignment decides the cell (keeping the candidates it gives a free place),
exactly as in the app. The found objects are matched one-to-one to the annotated
boxes (box IoU >= 0.5) and these figures come out:

    detection_recall     annotated chromosomes matched by a found object
    detection_precision  found objects that match an annotated chromosome
    count_exact          metaphases with as many objects found as annotated
    counted_exact        metaphases whose karyotype counts as many chromosomes as annotated
                         (the objects found less those the assignment set aside as likely no
                         chromosome: ``n_set_aside``)
    n_candidates         objects found faintly, below the finder's threshold, and of them
    n_candidates_kept    those the assignment gave a free place (the others are dropped)
    n_candidates_matched   and of those, the ones that match an annotated chromosome
    typed_accuracy       annotated chromosomes matched AND given their type after the assignment
    karyotype_exact      metaphases whose ISCN from the found, assigned objects equals the
                         annotated one
    seconds_per_metaphase  reading the image, finding, classifying, assigning (models loaded)

and, to tell the finder's errors from the classifier's, the classifier alone on crops cut
from the ANNOTATED boxes (``boxes_crop_accuracy``, ``boxes_assigned_accuracy``,
``boxes_karyotype_exact``). Everything is also given per difficulty when the data set lists
difficult metaphases (``difficult.txt``), and per annotated karyotype (``by_karyotype``:
the metaphases annotated 46,XX or 46,XY, and all others: trisomies, 45,X, a cell that lost
a chromosome), because a change that makes the normal cells exact by trusting the
karyotype's prior more can cost the abnormal ones, the diagnoses a lab is looking for.

With ``case_pattern`` (a regular expression whose first group is the case of a metaphase's
name: ``(.*).`` for cil24, whose cells are their case's name and one digit) the metaphases
of one case are read together, as the app reads a case's cells: each cell's sex is read
with the others' (``inference.classifier.assign_with_case``; ``n_sex_from_case`` cells
turned). The crops of the annotated boxes are judged cell by cell, as the trainer does.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from karyo_gui.core.annotations import AnnotatedMetaphase, annotated_cell, load_annotated_folder
from karyo_gui.core.case import Cell, Flag
from karyo_gui.core.iscn import NORMAL_KARYOTYPES, karyotype_string
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.loaders import read_cell_list
from karyo_gui.core.metaphase import (
    MetaphaseImage,
    MetaphaseReadError,
    match_boxes,
    read_metaphase,
)
from karyo_gui.inference.classifier import Classifier, assign_with_case
from karyo_gui.inference.finder import ChromosomeFinder, FindResult, chromosomes_from

NORMAL_GROUP, OTHER_GROUP = "46,XX or 46,XY", "other karyotypes"


def evaluate_metaphases(
    root: str | os.PathLike,
    names: str | os.PathLike | list[str] | None,
    finder: ChromosomeFinder,
    classifier: Classifier,
    progress: Callable[[int, int], None] | None = None,
    case_pattern: str | None = None,
) -> dict:
    metaphases, problems = load_annotated_folder(root, names)
    difficult_file = Path(root) / "difficult.txt"
    difficult = set(read_cell_list(difficult_file)) if difficult_file.is_file() else set()
    pattern = re.compile(case_pattern) if case_pattern else None
    cases: dict[tuple[str, str], list[AnnotatedMetaphase]] = {}
    for metaphase in metaphases:  # a name the pattern does not match is a case of its own
        match = pattern.fullmatch(metaphase.name) if pattern else None
        case = ("case", match.group(1)) if match and match.groups() else ("cell", metaphase.name)
        cases.setdefault(case, []).append(metaphase)
    rows, done = [], 0
    for members in cases.values():
        read = []
        for metaphase in members:
            try:
                read.append(_read(metaphase, finder, classifier))
            except MetaphaseReadError as error:
                problems.append(str(error))
            problems.extend(metaphase.problems)
        started = time.perf_counter()
        turned = {id(r.cell) for r in assign_with_case(classifier, [one.cell for one in read])}
        shared = (time.perf_counter() - started) / max(len(read), 1)
        for one in read:
            rows.append(_row(classifier, one, shared, id(one.cell) in turned))
            done += 1
            if progress is not None:
                progress(done, len(metaphases))
    metrics = _summary(rows)
    metrics["by_difficulty"] = {
        "difficult": _summary([r for r in rows if r["name"] in difficult]),
        "not_difficult": _summary([r for r in rows if r["name"] not in difficult]),
    }
    normal = [r["annotated_karyotype"] in NORMAL_KARYOTYPES for r in rows]
    metrics["by_karyotype"] = {
        NORMAL_GROUP: _summary([r for r, is_normal in zip(rows, normal) if is_normal]),
        OTHER_GROUP: _summary([r for r, is_normal in zip(rows, normal) if not is_normal]),
    }
    metrics.update(
        metaphases_wrong=[
            {
                k: r[k]
                for k in (
                    "name",
                    "found",
                    "counted",
                    "annotated",
                    "matched",
                    "karyotype",
                    "annotated_karyotype",
                )
            }
            for r in rows
            if not r["karyotype_exact"]
        ],
        finder=finder.description,
        finder_id=finder.model_id,
        model=classifier.description,
        model_id=classifier.model_id,
        device=classifier.device_name,
        problems=problems,
    )
    return metrics


@dataclass
class _Read:
    """A metaphase as the app read it, with what judging it needs."""

    metaphase: AnnotatedMetaphase
    cell: Cell
    image: MetaphaseImage
    result: FindResult
    box_of: dict  # chromosome id -> the finder's box
    faint: set  # ids of the objects found faintly (candidates)
    seconds: float


def _read(metaphase: AnnotatedMetaphase, finder: ChromosomeFinder, classifier: Classifier
          ) -> _Read:
    """A metaphase found and classified as the app does it, with what judging it needs."""
    started = time.perf_counter()
    image = read_metaphase(metaphase.image_path)
    result = finder.find(image)
    objects = result.objects  # the found and the faint candidates, as the app takes them
    cell = Cell(name=metaphase.name, metaphase=image, chromosomes=chromosomes_from(image, objects))
    cell.finder_id = finder.model_id
    box_of = {c.id: item.box for c, item in zip(cell.chromosomes, objects)}
    faint = {c.id for c, item in zip(cell.chromosomes, objects) if Flag.CANDIDATE in item.flags}
    if cell.chromosomes:
        classifier.classify(cell)  # drops the candidates the assignment found no place for
    seconds = time.perf_counter() - started
    return _Read(metaphase, cell, image, result, box_of, faint, seconds)


def _row(classifier: Classifier, read: _Read, seconds_more: float = 0.0,
         sex_from_case: bool = False) -> dict:
    """The figures of one metaphase, once its case has been read."""
    metaphase, cell, image, result = read.metaphase, read.cell, read.image, read.result
    box_of, faint, seconds = read.box_of, read.faint, read.seconds + seconds_more
    truth = np.array([c.box for c in metaphase.chromosomes], np.float64).reshape(-1, 4)
    # the finder's own boxes: annotators draw boxes a few pixels wider than the chromosome
    # (a region's tight box meets its annotated box at a median IoU of 0.68 on cil24 val)
    boxes = np.array([box_of[c.id] for c in cell.chromosomes], np.float64).reshape(-1, 4)
    scale = image.scale  # boxes of a downsampled image back to the file's pixels
    matches = match_boxes(boxes / scale, truth)
    typed = sum(cell.chromosomes[f].label is metaphase.chromosomes[t].type for f, t in matches)
    annotated_karyotype = karyotype_string(_counts(c.type for c in metaphase.chromosomes))
    karyotype = cell.karyotype if cell.chromosomes else ""

    reference = annotated_cell(metaphase, image.pixels if scale == 1.0 else None)
    if reference.chromosomes:
        classifier.classify(reference)
    crops_right = sum(c.predicted is c.given for c in reference.chromosomes)
    assigned_right = sum(c.label is c.given for c in reference.chromosomes)
    return {
        "name": metaphase.name,
        "found": len(cell.chromosomes),
        # the karyotype's count: the objects found less those the assignment set aside
        "counted": sum(c.counted for c in cell.chromosomes),
        "annotated": len(metaphase.chromosomes),
        "candidates": len(result.candidates),
        "candidates_kept": len(cell.chromosomes) - len(result.found),
        "candidates_matched": sum(cell.chromosomes[f].id in faint for f, _ in matches),
        "matched": len(matches),
        "typed": typed,
        "karyotype": karyotype,
        "annotated_karyotype": annotated_karyotype,
        "karyotype_exact": karyotype == annotated_karyotype,
        "sex_from_case": sex_from_case,
        "seconds": seconds,
        "flagged": sum(bool(c.flags) for c in cell.chromosomes),
        "box_crops": len(reference.chromosomes),
        "box_crops_right": crops_right,
        "box_assigned_right": assigned_right,
        "box_karyotype_exact": bool(reference.chromosomes)
        and reference.karyotype == annotated_karyotype,
    }


def _counts(types) -> dict[ChromosomeType, int]:
    counts: dict[ChromosomeType, int] = {}
    for chromosome_type in types:
        counts[chromosome_type] = counts.get(chromosome_type, 0) + 1
    return counts


def _summary(rows: list[dict]) -> dict:
    if not rows:
        return {"n_metaphases": 0}
    found = sum(r["found"] for r in rows)
    annotated = sum(r["annotated"] for r in rows)
    matched = sum(r["matched"] for r in rows)
    seconds = [r["seconds"] for r in rows]
    box_crops = sum(r["box_crops"] for r in rows)
    return {
        "n_metaphases": len(rows),
        "n_annotated": annotated,
        "n_found": found,
        "detection_recall": matched / max(annotated, 1),
        "detection_precision": matched / max(found, 1),
        "count_exact": float(np.mean([r["found"] == r["annotated"] for r in rows])),
        "counted_exact": float(np.mean([r["counted"] == r["annotated"] for r in rows])),
        "n_set_aside": sum(r["found"] - r["counted"] for r in rows),
        # objects found faintly, and of them those the assignment kept as chromosomes
        "n_candidates": sum(r["candidates"] for r in rows),
        "n_candidates_kept": sum(r["candidates_kept"] for r in rows),
        "n_candidates_matched": sum(r["candidates_matched"] for r in rows),
        "typed_accuracy": sum(r["typed"] for r in rows) / max(annotated, 1),
        "karyotype_exact": float(np.mean([r["karyotype_exact"] for r in rows])),
        "n_sex_from_case": sum(r["sex_from_case"] for r in rows),
        "seconds_per_metaphase": float(np.mean(seconds)),
        "seconds_per_metaphase_p90": float(np.percentile(seconds, 90)),
        "flagged_share": sum(r["flagged"] for r in rows) / max(found, 1),
        "boxes_crop_accuracy": sum(r["box_crops_right"] for r in rows) / max(box_crops, 1),
        "boxes_assigned_accuracy": sum(r["box_assigned_right"] for r in rows) / max(box_crops, 1),
        "boxes_karyotype_exact": float(np.mean([r["box_karyotype_exact"] for r in rows])),
    }
