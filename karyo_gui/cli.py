"""The ``karyo`` command: with no argument it opens the app on the example cell.

karyo                         open the app (example cell)
karyo gui [CELL_DIR|CASE]     open the app on a cell folder, folder of cells or case file
karyo example OUT_DIR [--karyotype 47,XY,+21] [--seed 1] [--unlabelled]
                              write a generated cell as a folder of PNG crops
karyo train --config CFG.yaml [options]
                              train a model (same as python -m trainer train)
karyo evaluate --data ROOT [--cells LIST] --checkpoint CKPT --json OUT.json
                              measure a model (same as python -m trainer evaluate)
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="karyo", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    gui = commands.add_parser("gui", help="open the karyotyping app")
    gui.add_argument("path", nargs="?", help="cell folder, folder of cells or case file")
    gui.add_argument("--example", default=None, help="karyotype of the example cell to show")
    example = commands.add_parser("example", help="write a generated example cell to a folder")
    example.add_argument("out_dir")
    example.add_argument("--karyotype", default="46,XY")
    example.add_argument("--seed", type=int, default=0)
    example.add_argument("--unlabelled", action="store_true", help="a flat folder of crops")
    from trainer.cli import add_evaluate_parser, add_train_parser

    add_train_parser(commands)
    add_evaluate_parser(commands)
    args = parser.parse_args(argv)

    if args.command in ("train", "evaluate"):
        from trainer.cli import run

        return run(args, "karyo")
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


if __name__ == "__main__":
    sys.exit(main())
