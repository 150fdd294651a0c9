"""What ``karyo classify`` writes: a classified cell as plain JSON, attention maps as PNGs."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import cv2
import numpy as np

from karyo_gui.core.case import Case, CellRole
from karyo_gui.core.case_karyotype import case_karyotype, compose_case
from karyo_gui.core.iscn import karyotype_string
from karyo_gui.core.labels import ChromosomeType

if TYPE_CHECKING:  # the classifier imports torch: the app's window must open without it
    from karyo_gui.inference.classifier import CellResult


def _type_name(chromosome_type: ChromosomeType | None) -> str | None:
    return None if chromosome_type is None else chromosome_type.display_name


def _file_of(path: str | None, base: str | None) -> str | None:
    if path is None:
        return None
    if base:
        relative = os.path.relpath(path, base)
        if not relative.startswith(".."):
            return relative
    return os.path.basename(path)


def cell_report(result: CellResult, top: int = 3) -> dict:
    """Per chromosome: file, predicted and assigned type, top-k probabilities, flags and
    display orientation;
    per cell: ISCN string, count, sex, the runner-up karyotype and what could not be read."""
    cell = result.cell
    assignment = result.assignment
    chromosomes = []
    for chromosome in cell.chromosomes:
        entry = {
            "id": chromosome.id,
            "file": _file_of(chromosome.source_path, cell.source),
            "predicted": _type_name(chromosome.predicted),
            "assigned": _type_name(chromosome.assigned),
            "manual": _type_name(chromosome.manual.label) if chromosome.manual else None,
            "type": chromosome.label.display_name,
            "flags": sorted(flag.value for flag in chromosome.flags),
            # as shown in the karyogram: turned counter-clockwise, then mirrored
            "rotation": chromosome.orientation.rotation,
            "mirrored": chromosome.orientation.flipped,
        }
        if chromosome.probabilities is not None:
            best = np.argsort(chromosome.probabilities)[::-1][:top]
            entry["top"] = [
                {"type": ChromosomeType(int(t)).display_name,
                 "probability": round(float(chromosome.probabilities[t]), 4)}
                for t in best
            ]  # fmt: skip
        if chromosome.given is not None:
            entry["given"] = chromosome.given.display_name
        if chromosome.region is not None:  # found in a whole metaphase image
            x0, y0, x1, y1 = chromosome.region.box
            entry["box"] = {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0}
            entry["area"] = chromosome.region.area
            entry["found_score"] = chromosome.found_score
        chromosomes.append(entry)
    report = {
        "cell": cell.name,
        "karyotype": cell.karyotype,
        "count": len(cell),
        "sex": cell.sex,
        # "signed_off" only for a sign-off whose digest checked out (see case_file)
        "status": cell.status.value,
        "moved_by_assignment": len(result.moved),
        "low_confidence": len(result.low_confidence),
        "seconds": round(result.seconds, 4),
        "chromosomes": chromosomes,
        "problems": list(cell.problems),
        "stain": "bright-on-dark" if cell.bright_on_dark else "dark-on-light",
        "warnings": [result.stain_warning] if result.stain_warning else [],
    }
    if assignment is not None:
        report["runner_up"] = {
            "karyotype": assignment.alternative,
            # natural-log odds against the runner-up: 4.6 means 100 times less probable
            "log_odds": round(assignment.alternative_cost - assignment.cost, 3),
        }
        # the cell's own word on its sex (log odds of XX against XY), and whether the case's
        # other cells turned it (assign_with_case)
        report["sex_evidence"] = round(assignment.female_log_odds, 3)
        report["sex_from_case"] = result.sex_from_case
    if cell.metaphase is not None:
        metaphase = cell.metaphase
        report["metaphase"] = {
            "file": os.path.basename(metaphase.path) if metaphase.path else None,
            "width": metaphase.width,
            "height": metaphase.height,
            "scale": metaphase.scale,  # boxes are in pixels of the image at this scale
            "inverted": metaphase.inverted,
            "finder_id": cell.finder_id,
        }
    if cell.given_counts():
        report["given_karyotype"] = karyotype_string(cell.given_counts())
    return report


def attention_overlay(image: np.ndarray, crop_map: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """A crop (grey, as stored) with its attention map laid over it in colour (RGB uint8)."""
    grey = np.repeat(np.asarray(image, np.uint8)[:, :, None], 3, axis=2)
    heat = cv2.applyColorMap(np.uint8(255 * np.clip(crop_map, 0, 1)), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(heat, opacity, grey, 1 - opacity, 0)


def safe_file_name(text: str) -> str:
    """A chromosome or cell id as a file name on any system."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "crop"


def case_report(case: Case) -> dict:
    """The case as a lab reports it: its karyotype (the reviewer's override, else composed
    from the cells by the ISCN clonality rules), how many cells were counted, analysed and
    karyogrammed, the clones with their cell counts and the single-cell findings left out."""
    composition = compose_case(case)
    composed = composition.as_dict()
    return {
        "karyotype": case_karyotype(case, composition),
        "composed": composed.pop("karyotype"),
        "overridden": case.karyotype_override is not None,
        "study": case.study.value,
        "band_level": case.band_level,
        **{f"cells_{role.value}": sum(role in cell.roles for cell in case.cells)
           for role in CellRole},
        **composed,  # clones, single-cell findings, which cells it rests on
        "signed_by": {s.role.value: s.name for s in case.signatures},
        "final": case.is_final,
        "problems": list(composition.problems),
    }
