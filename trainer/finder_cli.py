"""The command-line options of ``train-finder`` and ``export-finder`` (no torch: building
the parser stays instant; the work is in ``trainer.finder_training``)."""

from __future__ import annotations

import argparse
import math


def add_finder_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser("train-finder", help="train the chromosome finder")
    parser.add_argument("--data", required=True, help="folder with images/ and annotations/")
    parser.add_argument(
        "--train-cells", help="list of training metaphases (default splits/train.txt)"
    )
    parser.add_argument(
        "--val-cells", help="list of validation metaphases (default splits/val.txt)"
    )
    parser.add_argument("--out", default="runs/finder", help="run folder")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--channels", type=int, default=96)
    parser.add_argument("--input-width", type=float, default=10.0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=320)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="use only this many metaphases")
    parser.add_argument(
        "--generated", type=int, default=0, help="add this many generated metaphases to training"
    )
    parser.add_argument(
        "--val-limit", type=int, default=0, help="judge each epoch on the first N val metaphases"
    )
    parser.add_argument(
        "--box-loss", type=float, default=0.0,
        help="weight of a GIoU term on the boxes the cells near each centre predict (0: off; "
        "the shipped finder's last 6 epochs used 1)",
    )  # fmt: skip
    parser.add_argument("--name", default="karyo-finder")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument(
        "--init",
        help="start from this finder model file's weights (its architecture), e.g. to train "
        "the shipped finder further",
    )
    return parser


def add_export_finder_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser("export-finder", help="copy a finder model file (e.g. half size)")
    parser.add_argument("--checkpoint", required=True, help="finder model file to export")
    parser.add_argument("--out", required=True, help="new finder model file (.safetensors)")
    parser.add_argument("--half", action="store_true", help="store weights as float16")
    parser.add_argument("--name", help="new name for the header")
    parser.add_argument("--threshold", type=float, help="score above which a peak is a chromosome")
    parser.add_argument(
        "--flip-test", choices=["on", "off", "both"],
        help="also look at each image mirrored and average the looks (about twice the time); "
        "both: mirrored and upside down (three looks)",
    )  # fmt: skip
    parser.add_argument(
        "--metrics", nargs="*", default=[], metavar="SPLIT=EVAL.json",
        help="store measured metrics in the header, e.g. test=runs/finder/eval-test.json",
    )  # fmt: skip
    return parser


def check_finder_args(args: argparse.Namespace) -> str | None:
    checks = (
        (args.epochs >= 1, f"--epochs {args.epochs} must be at least 1"),
        (args.batch_size >= 1, f"--batch-size {args.batch_size} must be at least 1"),
        (args.crop >= 64 and args.crop % 32 == 0, f"--crop {args.crop}: a multiple of 32, >= 64"),
        (math.isfinite(args.lr) and 0 < args.lr < 1, f"--lr {args.lr} must lie in (0, 1)"),
        (
            math.isfinite(args.weight_decay) and args.weight_decay >= 0,
            f"--weight-decay {args.weight_decay} must be >= 0",
        ),
        (
            math.isfinite(args.box_loss) and 0 <= args.box_loss <= 100,
            f"--box-loss {args.box_loss} must lie in 0..100",
        ),
        (2 <= args.input_width <= 64, f"--input-width {args.input_width} must lie in 2..64"),
        (8 <= args.channels <= 512, f"--channels {args.channels} must lie in 8..512"),
        (args.threads >= 0, f"--threads {args.threads} must be >= 0"),
        (0 <= args.generated <= 100_000, f"--generated {args.generated} must lie in 0..100000"),
    )
    for ok, message in checks:
        if not ok:
            return message
    return None


