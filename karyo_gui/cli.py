"""The ``karyo`` command: with no argument it opens the app on the example cell.

karyo                         open the app (example cell)
karyo gui [CELL_DIR|CASE|IMAGE]
                              open the app on a cell folder, folder of cells, case file,
                              metaphase image or folder of metaphase images
karyo example OUT_DIR [--karyotype 47,XY,+21] [--seed 1] [--unlabelled]
                              write a generated cell as a folder of PNG crops
karyo classify CELL_DIR|IMAGE [--checkpoint CKPT] [--finder F] [--device D] --json OUT.json
               [--png KARYOGRAM.png] [--cam-dir DIR]
                              classify a cell (crops, or a whole metaphase image whose
                              chromosomes are found first): types, karyotype, flags as JSON
karyo iscn "KARYOTYPE"        read an ISCN karyotype: each cell line and abnormality in
                              words, and the karyotype written canonically
karyo train --config CFG.yaml [options]
                              train a model (same as python -m trainer train)
karyo evaluate --data ROOT [--cells LIST] [--checkpoint CKPT] --json OUT.json
                              measure a model (same as python -m trainer evaluate); on a
                              folder of annotated metaphases (images/ + annotations/) it
                              measures finder, classifier and assignment together
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
from pathlib import Path

from karyo_gui.core.assignment import TYPE_DOUBT

# commands whose process ends as soon as their output is written (see ``entry_point``)
LEAVE_WITHOUT_TEARDOWN = {"classify"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="karyo", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    gui = commands.add_parser("gui", help="open the karyotyping app")
    gui.add_argument(
        "path", nargs="?",
        help="cell folder, folder of cells, case file, metaphase image or folder of them",
    )  # fmt: skip
    gui.add_argument("--example", default=None, help="karyotype of the example cell to show")
    example = commands.add_parser("example", help="write a generated example cell to a folder")
    example.add_argument("out_dir")
    example.add_argument("--karyotype", default="46,XY")
    example.add_argument("--seed", type=int, default=0)
    example.add_argument("--unlabelled", action="store_true", help="a flat folder of crops")
    classify = commands.add_parser("classify", help="classify a cell and write its karyotype")
    classify.add_argument(
        "path", help="cell folder, folder of cells, case file, metaphase image or folder of them"
    )
    classify.add_argument("--checkpoint", help="model file (default: the shipped model)")
    classify.add_argument("--finder", help="chromosome-finder model file (default: shipped)")
    classify.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    classify.add_argument("--json", required=True, help="where to write the result")
    classify.add_argument("--png", help="also save the karyogram as this PNG")
    classify.add_argument("--cam-dir", help="also save each crop's Grad-CAM map here")
    classify.add_argument(
        "--doubt", type=float, default=None,
        help="flag chromosomes whose type is wrong with a probability above this (read from "
        f"the whole cell; default {TYPE_DOUBT:g})",
    )  # fmt: skip
    iscn = commands.add_parser("iscn", help="read an ISCN karyotype and say what it states")
    iscn.add_argument("karyotype", help='an ISCN karyotype, e.g. "46,XY,t(9;22)(q34.1;q11.2)"')
    from trainer.cli import add_evaluate_parser, add_train_parser
    from trainer.finder_cli import add_export_finder_parser, add_finder_parser

    add_train_parser(commands)
    add_evaluate_parser(commands)
    add_finder_parser(commands)
    add_export_finder_parser(commands)
    args = parser.parse_args(argv)

    if args.command == "evaluate" and _is_annotated_metaphases(args.data):
        return _evaluate_metaphases(args)
    if args.command in ("train", "evaluate", "train-finder", "export-finder"):
        from trainer.cli import run

        return run(args, "karyo")
    if args.command == "iscn":
        return _explain_iscn(args.karyotype)
    if args.command == "classify":
        return _classify(args)
    if args.command == "example":
        return _write_example(args.out_dir, args.karyotype, args.seed, not args.unlabelled)
    path = getattr(args, "path", None)
    return _open_gui(path, getattr(args, "example", None))


def _write_example(out_dir: str, karyotype: str, seed: int, labelled: bool) -> int:
    from karyo_gui.core.loaders import write_cell
    from karyo_gui.core.synthetic import generate_cell

    try:
        cell = generate_cell(karyotype, seed=seed, name=os.path.basename(out_dir.rstrip("/")))
        folder = write_cell(cell, out_dir, labelled=labelled)
    except ValueError as error:
        print(f"karyo: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"karyo: cannot write {out_dir}: {error.strerror or error}", file=sys.stderr)
        return 1
    print(f"wrote {len(cell)} crops of a {karyotype} cell to {folder}")
    return 0


def _explain_iscn(text: str) -> int:
    """Print what a karyotype states, line by line; a malformed one is shown with a caret
    under the part that is wrong."""
    from karyo_gui.core.iscn import (
        CaseKaryotype,
        IscnError,
        Karyotype,
        abnormality_in_words,
        order_abnormalities,
        parse_iscn,
    )

    try:
        case = parse_iscn(text)
    except IscnError as error:
        print(f"  {text}", file=sys.stderr)
        print(f"  {' ' * error.position}^", file=sys.stderr)
        print(f"karyo: {error}", file=sys.stderr)
        return 2
    kinds = {"mos": "a mosaic", "chi": "a chimera", "": "clones"}
    if len(case.clones) > 1:
        print(f"{kinds[case.prefix]} of {len(case.clones)} cell lines")
    for number, line in enumerate(case.clones, start=1):
        sex = f"sex chromosomes {line.sex}" if line.sex else "no sex chromosomes given"
        cells = "" if line.cells is None else f", {line.cells} cell{'s' * (line.cells > 1)}"
        print(f"cell line {number}: {line.count} chromosomes, {sex}{cells}")
        width = max((len(item.text) for item in line.abnormalities), default=0)
        for item in line.abnormalities:
            print(f"  {item.text:<{width}}  {abnormality_in_words(item)}")
        if not line.abnormalities:
            print("  normal" if line.is_normal
                  else "  no abnormality listed beyond the count and sex chromosomes")
    canonical = CaseKaryotype(tuple(
        Karyotype(line.count, line.sex, order_abnormalities(line.abnormalities), line.cells)
        for line in case.clones), case.prefix).text
    reordered = "  (abnormalities put in ISCN order)" if canonical != case.text else ""
    print(f"canonical: {canonical}{reordered}")
    return 0


def _classify(args: argparse.Namespace) -> int:
    """``karyo classify``: user mistakes become one-line messages and a non-zero status."""
    from karyo_gui.core.case_file import SaveTargetError, writable_target, write_atomically
    from karyo_gui.core.loaders import display_path
    from karyo_gui.core.opening import OpenError, open_case
    from karyo_gui.core.review import needs_review

    if args.doubt is not None and not 0 <= args.doubt <= 1:
        print(f"karyo classify: --doubt {args.doubt} must lie between 0 and 1", file=sys.stderr)
        return 2
    try:  # before the work: --json /dev/null or a folder is refused, not found out at the end
        for output in (args.json, args.png):
            if output:
                Path(output).parent.mkdir(parents=True, exist_ok=True)
                writable_target(output)
    except SaveTargetError as error:
        print(f"karyo classify: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # as for a failed write: status 1
        print(f"karyo classify: {display_path(output)}: cannot write here "
              f"({error.strerror or error})", file=sys.stderr)
        return 1
    try:
        case = open_case(args.path)
    except OpenError as error:
        print(f"karyo classify: {error}", file=sys.stderr)
        return 2
    from trainer.checkpoint import CheckpointError
    from trainer.devices import DeviceError
    from trainer.finder_file import FinderError

    try:
        from karyo_gui.inference.classifier import Classifier, assign_with_case
        from karyo_gui.inference.report import case_report, cell_report

        # on the CPU from the cached ONNX copy when there is one (no torch import), as the app
        classifier = Classifier(args.checkpoint, args.device, quick_start=True)
        if args.doubt is not None:
            classifier.doubt = args.doubt
        unfound = _find_chromosomes(case, args)
        results = [classifier.classify(cell) for cell in case.cells if cell not in unfound]
        # the cells of a case are one person's: a cell in doubt about its sex reads it with
        # the others
        again = {id(r.cell): r for r in assign_with_case(classifier, [r.cell for r in results])}
        results = [again.get(id(r.cell), r) for r in results]
        document = {
            "source": display_path(args.path),
            "model": {
                "name": classifier.header.name,
                "arch": classifier.header.arch,
                "model_id": classifier.model_id,
            },
            "device": classifier.device_name,
            "cells": [cell_report(result) for result in results],
            "case": case_report(case),
            "problems": case.problems,
        }
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(out, json.dumps(document, indent=1, ensure_ascii=False))
        for result in results:
            print(
                f"{result.cell.name}: {result.karyotype} ({len(result.cell)} chromosomes, "
                f"{len(result.moved)} moved by the assignment, "
                f"{sum(needs_review(c) for c in result.cell.chromosomes)} to check)"
            )
            if result.stain_warning:
                print(f"{result.cell.name}: {result.stain_warning}")
            if result.sex_from_case:
                print(f"{result.cell.name}: sex read as {result.cell.sex} with the case's "
                      "other cells (in doubt by its own chromosomes)")
        print(f"wrote {out}")
        if args.png:
            _write_karyograms(results, Path(args.png))
        if args.cam_dir:
            _write_attention_maps(classifier, results, Path(args.cam_dir))
        classifier.save_quick_start()  # once per model file: the next run starts quicker
    except (CheckpointError, DeviceError, FinderError) as error:
        print(f"karyo classify: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        print(f"karyo classify: {where}{error.strerror or error}", file=sys.stderr)
        return 1
    return 0


def _find_chromosomes(case, args: argparse.Namespace) -> list:
    """Find the chromosomes of the case's metaphase images (cells of crops need nothing);
    the cells where nothing was found, each named in the case's problems."""
    waiting = [cell for cell in case.cells if cell.needs_finding]
    if not waiting:
        return []
    from karyo_gui.inference.finder import ChromosomeFinder, NoChromosomesFound

    finder = ChromosomeFinder(args.finder, args.device, quick_start=True)  # as the app does
    unfound = []
    for cell in waiting:
        try:
            result = finder.find_cell(cell)
        except NoChromosomesFound as error:
            case.problems.append(str(error))
            print(f"karyo classify: {error}", file=sys.stderr)
            unfound.append(cell)
            continue
        flagged = sum(bool(item.flags) for item in result.found)
        faint = f" and {len(result.candidates)} faint candidates" if result.candidates else ""
        print(f"{cell.name}: {len(result.found)} chromosomes found{faint} "
              f"({flagged} flagged for review) in {result.seconds:.2f} s")
    finder.save_quick_start()  # once per finder file: the next run starts quicker
    return unfound


def _is_annotated_metaphases(data: str) -> bool:
    from karyo_gui.core.annotations import is_annotated_folder

    return is_annotated_folder(data)


def _evaluate_metaphases(args: argparse.Namespace) -> int:
    """``karyo evaluate`` on annotated metaphases: finder, classifier and assignment."""
    from karyo_gui.core.annotations import AnnotationError
    from karyo_gui.core.case_file import write_atomically
    from karyo_gui.core.loaders import CellLoadError
    from trainer.checkpoint import CheckpointError
    from trainer.devices import DeviceError
    from trainer.finder_file import FinderError

    if args.case_pattern:
        try:
            re.compile(args.case_pattern)
        except re.error as error:
            print(f"karyo evaluate: --case-pattern {args.case_pattern!r} is not a regular "
                  f"expression ({error})", file=sys.stderr)
            return 2
    try:
        from karyo_gui.inference.classifier import Classifier
        from karyo_gui.inference.finder import ChromosomeFinder
        from karyo_gui.inference.metaphase_evaluation import evaluate_metaphases

        finder = ChromosomeFinder(args.finder, args.device)
        classifier = Classifier(args.checkpoint, args.device)
        metrics = evaluate_metaphases(args.data, args.cells, finder, classifier,
                                      case_pattern=args.case_pattern)
    except (AnnotationError, CellLoadError, CheckpointError, DeviceError, FinderError) as error:
        print(f"karyo evaluate: {error}", file=sys.stderr)
        return 2
    metrics.update(data=str(args.data), cells=args.cells)
    out = Path(args.json)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(out, json.dumps(metrics, indent=1, ensure_ascii=False))
    except OSError as error:  # SaveTargetError too: a folder, a device, a pipe
        where = f"{error.filename}: " if error.filename else ""
        print(f"karyo evaluate: {where}{error.strerror or error}", file=sys.stderr)
        return 1
    print(format_metaphase_metrics(metrics))
    print(f"-> {out}")
    return 0


def format_metaphase_metrics(metrics: dict) -> str:
    keys = ("detection_recall", "detection_precision", "count_exact", "counted_exact",
            "typed_accuracy", "karyotype_exact", "seconds_per_metaphase", "boxes_crop_accuracy",
            "boxes_assigned_accuracy")
    parts = [("all", metrics), *metrics.get("by_difficulty", {}).items(),
             *metrics.get("by_karyotype", {}).items()]  # fmt: skip
    lines = [f"{'':24s}" + "".join(f"{name:>17s}" for name, _ in parts)]
    counts = "".join(f"{m.get('n_metaphases', 0):>17d}" for _, m in parts)
    lines.append(f"{'metaphases':24s}{counts}")
    turned = "".join(f"{m.get('n_sex_from_case', 0):>17d}" for _, m in parts)
    lines.append(f"{'sex read with the case':24s}{turned}")
    for key in keys:
        cells = "".join(
            f"{m[key]:>17.4f}" if key in m else f"{'-':>17s}" for _, m in parts
        )
        lines.append(f"{key:24s}{cells}")
    return "\n".join(lines)


def _numbered(path: Path, name: str, several: bool) -> Path:
    """One output file per cell: the given name, or NAME-<cell> when there are several."""
    from karyo_gui.inference.report import safe_file_name

    return path.with_name(f"{path.stem}-{safe_file_name(name)}{path.suffix}") if several else path


def _write_karyograms(results, png: Path) -> None:
    """Each karyogram drawn into a scratch file, then moved into place as the JSON is
    (``write_atomically``: a symlink written through, a device or pipe refused)."""
    import tempfile

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # a picture needs no screen
    from PySide6.QtWidgets import QApplication

    from karyo_gui.core.case_file import write_atomically
    from karyo_gui.qt.karyogram_view import render_karyogram

    _app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory(prefix="karyo-") as scratch:
        for result in results:
            drawn = render_karyogram(result.cell, Path(scratch) / "karyogram.png")
            written = _numbered(png, result.cell.name, len(results) > 1)
            write_atomically(written, drawn.read_bytes())
            print(f"wrote {written}")


def _write_attention_maps(classifier, results, folder: Path) -> None:
    from karyo_gui.core.loaders import write_png
    from karyo_gui.inference.report import attention_overlay, safe_file_name

    for result in results:
        cell = result.cell
        cell_folder = folder / safe_file_name(cell.name) if len(results) > 1 else folder
        pictured = [c for c in cell.chromosomes if c.image is not None]
        cell_folder.mkdir(parents=True, exist_ok=True)
        for chromosome in pictured:
            attention = classifier.attention(cell, chromosome.id)
            name = f"{safe_file_name(chromosome.id)}-{chromosome.label.display_name}.png"
            write_png(cell_folder / name, attention_overlay(chromosome.image, attention.crop_map))
        print(f"wrote {len(pictured)} attention maps to {cell_folder}")


def _open_gui(path: str | None, example: str | None) -> int:
    if (
        sys.platform.startswith("linux")
        and not os.environ.get("QT_QPA_PLATFORM")
        and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    ):
        print(
            "karyo: no display found (DISPLAY is not set). Run it in a desktop session, "
            "or under a virtual screen: xvfb-run -a karyo",
            file=sys.stderr,
        )
        return 1
    if example is not None:
        from karyo_gui.core.iscn import parse_karyotype

        try:
            parse_karyotype(example)
        except ValueError as error:
            print(f"karyo: {error}", file=sys.stderr)
            return 2
    from karyo_gui.qt.app import run_app

    return run_app(path, example)


def entry_point() -> None:
    """The ``karyo`` console script (and ``python -m karyo_gui``).

    After ``karyo classify`` has written its files, the process leaves at once instead of
    tearing the interpreter down: collecting the objects of torch, timm and the compiler
    stack they import (torch._dynamo, sympy, triton) takes about a second on a 2-core CPU,
    a quarter of the command's time, and frees nothing a finished process needs. Every
    output is closed before (``write_atomically`` syncs the JSON; the PNGs are written
    and closed), and the standard streams and logging are flushed here.
    """
    argv = sys.argv[1:]
    status = main(argv)
    if argv[:1] and argv[0] in LEAVE_WITHOUT_TEARDOWN:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to say
                stream.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    entry_point()
