"""``python -m trainer train|evaluate|export``: train a model, measure one, or copy one.

python -m trainer train --config trainer/configs/default.yaml [--lr 3e-4 ...] [--events jsonl]
python -m trainer evaluate --data ROOT [--cells LIST] [--checkpoint CKPT] --json OUT.json
                           [--plots DIR] [--device D] [--second-look MARGIN]
python -m trainer train-finder --data ../shared/data/cil24 --out runs/finder [--epochs 20]
python -m trainer export --checkpoint CKPT --out NEW.safetensors [--half] [--metrics test=OUT.json]
                         [--orientation-cells LIST --data ROOT] [--calibrate DATA=LIST ...]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

from trainer.config import (
    MAX_BATCH_SIZE,
    SECOND_LOOK_MARGIN,
    ConfigError,
    add_arguments,
    check_straighten_bend,
    resolve,
)


def build_parser(prog: str = "python -m trainer") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_train_parser(commands)
    add_evaluate_parser(commands)
    add_export_parser(commands)
    from trainer.finder_cli import add_export_finder_parser, add_finder_parser

    add_finder_parser(commands)
    add_export_finder_parser(commands)
    return parser


def add_train_parser(commands) -> argparse.ArgumentParser:
    train = commands.add_parser("train", help="train a model (options override the YAML)")
    train.add_argument("--config", help="YAML file of options")
    train.add_argument("--events", choices=["jsonl"], help="print JSON-lines events on stdout")
    add_arguments(train)
    return train


def add_evaluate_parser(commands) -> argparse.ArgumentParser:
    evaluate = commands.add_parser("evaluate", help="measure a model on labelled cells")
    evaluate.add_argument("--data", required=True, help="labelled dataset folder")
    evaluate.add_argument("--cells", help="cell list file (e.g. splits/test.txt)")
    evaluate.add_argument("--checkpoint", help="model file (default: the shipped model)")
    evaluate.add_argument(
        "--finder", help="chromosome-finder model file, for annotated metaphases (default: the "
        "shipped one)",
    )  # fmt: skip
    evaluate.add_argument("--json", required=True, help="where to write the metrics")
    evaluate.add_argument(
        "--case-pattern", metavar="REGEX",
        help="annotated metaphases: read the metaphases of one case together, as the app "
        "reads a case (the pattern's first group is the case of a name; cil24: '(.*).')",
    )  # fmt: skip
    evaluate.add_argument("--plots", help="folder for confusion-matrix and t-SNE PNGs")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--batch-size", type=int, default=256)
    evaluate.add_argument(
        "--second-look", type=float, default=SECOND_LOOK_MARGIN, metavar="MARGIN",
        help="look again, upside down, at crops whose top-two probabilities are closer than "
        f"this (default {SECOND_LOOK_MARGIN}; 0: one look only)",
    )  # fmt: skip
    _add_straighten_option(evaluate)
    return evaluate


def _add_straighten_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--straighten-bend", type=float, metavar="BEND",
        help="straighten chromosomes whose centre line strays at least BEND chromosome widths "
        "from the line between its ends before classifying them (default: as the model was "
        "trained; 0: never)",
    )  # fmt: skip


def _preprocessing(header, args: argparse.Namespace):
    """The model's input preprocessing, with ``--straighten-bend`` applied if given."""
    preprocessing = header.input_preprocessing
    if args.straighten_bend is None:
        return preprocessing
    check_straighten_bend(args.straighten_bend)
    return replace(preprocessing, straighten_bend=args.straighten_bend)


def add_export_parser(commands) -> argparse.ArgumentParser:
    export = commands.add_parser("export", help="copy a model file, e.g. at half size")
    export.add_argument("--checkpoint", required=True, help="model file to export")
    export.add_argument("--out", required=True, help="new model file (.safetensors)")
    export.add_argument("--half", action="store_true", help="store weights as float16")
    export.add_argument("--name", help="new model name for the header")
    export.add_argument(
        "--metrics", nargs="*", default=[], metavar="SPLIT=EVAL.json",
        help="store measured metrics in the header, e.g. test=runs/default/eval-test.json",
    )  # fmt: skip
    export.add_argument(
        "--orientation-cells", metavar="LIST",
        help="fit the orientation head (p-arm up or down) on the crops of these cells of "
        "--data first, e.g. the training split; models trained by this karyo have one already",
    )  # fmt: skip
    export.add_argument("--data", help="dataset folder of --orientation-cells")
    export.add_argument(
        "--calibrate", nargs="*", default=[], metavar="DATA=LIST",
        help="fit the probabilities' temperature on the crops of these cells (choose val), "
        "e.g. ../shared/data/gband612=../shared/data/gband612/splits/val.txt",
    )  # fmt: skip
    _add_straighten_option(export)
    return export


def main(argv: list[str] | None = None, prog: str = "python -m trainer") -> int:
    args = build_parser(prog).parse_args(argv)
    return run(args, prog)


def run(args: argparse.Namespace, prog: str) -> int:
    """Run a parsed ``train`` or ``evaluate``; user mistakes become one-line messages."""
    # torch is imported here, not at the top, so that building the parser stays instant
    from karyo_gui.core.case_file import SaveTargetError
    from trainer.checkpoint import CheckpointError
    from trainer.data import DataError
    from trainer.devices import DeviceError

    if args.command == "train-finder":
        from trainer.finder_training import run_finder

        return run_finder(args, prog)
    if args.command == "export-finder":
        from trainer.finder_training import export_finder

        return export_finder(args, prog)
    try:
        if args.command == "train":
            return _train(args, prog)
        if args.command == "export":
            return _export(args)
        return _evaluate(args)
    except (CheckpointError, ConfigError, DataError, DeviceError, SaveTargetError) as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"{prog}: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return 1


def _train(args: argparse.Namespace, prog: str = "python -m trainer") -> int:
    from trainer.engine import TrainingDiverged, TrainingInterrupted, train

    overrides = {
        key: value
        for key, value in vars(args).items()
        if key not in ("command", "config", "events")
    }
    config = resolve(args.config, overrides)
    try:
        best = train(config, jsonl=args.events == "jsonl")
    except TrainingInterrupted:
        print(f"interrupted; continue with: --resume --output {config.output}", file=sys.stderr)
        return 130
    except TrainingDiverged as error:  # no weights of this run were written after it
        print(f"{prog}: {error}", file=sys.stderr)
        return 1
    if args.events != "jsonl":
        print(f"best model: {best}")
    return 0


def _export(args: argparse.Namespace) -> int:
    import torch

    from trainer.checkpoint import load_checkpoint, save_checkpoint

    net, header = load_checkpoint(args.checkpoint)
    header.preprocessing = _preprocessing(header, args).to_dict()
    if args.name:
        header.name = args.name
    for item in args.metrics:
        split, _, path = item.partition("=")
        if not path:
            raise ConfigError(f"--metrics {item!r}: write SPLIT=EVAL.json")
        try:
            measured = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ConfigError(f"{path}: cannot read metrics ({error})") from None
        keep = (
            "n_cells", "n_crops", "crop_accuracy", "assigned_accuracy", "iscn_exact",
            "iscn_exact_normal", "iscn_exact_other", "n_cells_normal", "n_cells_other",
            "macro_recall", "macro_auc", "cells",
        )  # fmt: skip
        header.metrics[split] = {key: measured.get(key) for key in keep}
    if args.orientation_cells:
        _fit_orientation(net, header, args)
    if args.calibrate:
        _calibrate(net, header, args.calibrate)
    out = save_checkpoint(args.out, net, header, torch.float16 if args.half else None)
    size = out.stat().st_size / 2**20
    print(f"wrote {out} ({size:.1f} MiB, model id {header.model_id})")
    return 0


def _fit_orientation(net, header, args: argparse.Namespace) -> None:
    import torch

    from trainer.data import load_dataset_crops
    from trainer.orientation import fit_orientation

    if not args.data:
        raise ConfigError("--orientation-cells needs --data, the dataset folder of those cells")
    preprocessing = header.input_preprocessing
    crops = load_dataset_crops(args.data, args.orientation_cells, preprocessing)
    report = fit_orientation(net, crops.images, preprocessing, torch.device("cpu"))
    if not report["kept"]:
        print(f"no orientation head: {report['reason']}", file=sys.stderr)
        return  # save_checkpoint writes the header without one, as the model has none
    header.orientation = report
    accuracy, held_out = report["held_out_accuracy"], report["held_out_crops"]
    print(f"orientation head fitted on {report['crops']} crops: "
          f"{accuracy:.4f} right on the {held_out} kept back")  # fmt: skip


def _calibrate(net, header, sources: list[str]) -> None:
    import numpy as np
    import torch

    from trainer.calibration import calibration_report
    from trainer.data import load_dataset_crops
    from trainer.evaluation import evaluate_crops

    probabilities, labels, fitted_on = [], [], []
    preprocessing = header.input_preprocessing
    for source in sources:
        data, _, cells = source.partition("=")
        if not cells:
            raise ConfigError(f"--calibrate {source!r}: write DATA=LIST (a dataset folder and "
                              "its cell list)")
        crops = load_dataset_crops(data, cells, preprocessing)
        _, predictions = evaluate_crops(net, crops, preprocessing, torch.device("cpu"))
        probabilities.append(predictions.probabilities)
        labels.append(crops.labels)
        fitted_on.append(f"{Path(data).name}:{Path(cells).name} ({len(crops)} crops)")
    report = calibration_report(np.concatenate(probabilities), np.concatenate(labels))
    header.calibration = {**report, "fitted_on": fitted_on}
    print(f"temperature {report['temperature']} fitted on {', '.join(fitted_on)}: calibration "
          f"error of the top probability {report['ece_before']} -> {report['ece_after']}")


def _evaluate(args: argparse.Namespace) -> int:
    from karyo_gui.core.case_file import write_atomically
    from trainer.checkpoint import default_checkpoint, load_checkpoint
    from trainer.data import DataError, load_dataset_crops
    from trainer.devices import pick_device
    from trainer.evaluation import evaluate_crops, per_type_table, plot_confusion, plot_tsne

    if not 0 <= args.second_look <= 1:
        raise ConfigError(f"--second-look {args.second_look} must lie between 0 and 1")
    if not 1 <= args.batch_size <= MAX_BATCH_SIZE:
        raise ConfigError(f"--batch-size {args.batch_size} must be 1 to {MAX_BATCH_SIZE:,} crops")
    from karyo_gui.core.annotations import is_annotated_folder

    if is_annotated_folder(args.data):
        print(
            f"{args.data} holds annotated metaphases: measuring the classifier on the crops cut "
            "from the annotated boxes (`karyo evaluate` measures finder and classifier together)"
        )
    device = pick_device(args.device)
    net, header = load_checkpoint(args.checkpoint or default_checkpoint(), device)
    preprocessing = _preprocessing(header, args)
    crops = load_dataset_crops(args.data, args.cells, preprocessing)
    if not len(crops):
        raise DataError(f"{args.data}: no labelled crops to evaluate on")
    metrics, predictions = evaluate_crops(
        net, crops, preprocessing, device, args.batch_size, args.second_look
    )
    metrics.update(
        model=header.name,
        model_id=header.model_id,
        arch=header.arch,
        straighten_bend=preprocessing.straighten_bend,
        data=str(args.data),
        cells=args.cells,
        problems=crops.problems,
    )
    if args.plots:
        folder = Path(args.plots)
        folder.mkdir(parents=True, exist_ok=True)
        title = f"{header.name} ({header.arch}) on {Path(args.cells or args.data).name}"
        metrics["plots"] = [
            str(plot_confusion(metrics["confusion_matrix"], folder / "confusion.png", title)),
            str(plot_tsne(predictions.embeddings, crops.labels, folder / "tsne.png", title)),
        ]
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out, json.dumps(_finite(metrics), indent=1))
    print(per_type_table(metrics))
    print(
        f"{metrics['n_crops']} crops of {metrics['n_cells']} cells: "
        f"crop accuracy {metrics['crop_accuracy']:.4f}, "
        f"assigned accuracy {metrics['assigned_accuracy']:.4f}, "
        f"ISCN exact {metrics['iscn_exact']:.3f} (46,XX or 46,XY "
        f"{metrics['iscn_exact_normal']:.3f} of {metrics['n_cells_normal']}, others "
        f"{metrics['iscn_exact_other']:.3f} of {metrics['n_cells_other']}), "
        f"macro recall {metrics['macro_recall']:.4f}, "
        f"macro AUC {metrics['macro_auc']:.4f}, {metrics['crops_per_second']:.0f} crops/s on "
        f"{metrics['device']} -> {out}"
    )
    if metrics["cells_labels_suspect"]:
        suspect = metrics["cells_labels_suspect"]
        print(
            f"labels of {len(suspect)} cell(s) look shifted or swapped by one type, please "
            f"check them: {', '.join(c['cell'] for c in suspect)} (crop accuracy without them "
            f"{metrics['crop_accuracy_without_suspect_cells']:.4f}; see cells_labels_suspect)"
        )
    return 0


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
