"""Time loading a split of a labelled dataset and summarise its karyotypes.

.venv/bin/python bench/load_dataset.py [--root ../shared/data/gband612] [--split test]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from karyo_gui.core.iscn import karyotype_string
from karyo_gui.core.loaders import CellLoadError, load_dataset

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gband612"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--split", default="test", help="train, val, test or 'all'")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    cells = None if args.split == "all" else args.root / "splits" / f"{args.split}.txt"
    start = time.perf_counter()
    try:
        dataset = load_dataset(args.root, cells, workers=args.workers)
    except CellLoadError as error:
        print(f"load_dataset: {error}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    karyotypes = Counter(karyotype_string(cell.given_counts()) for cell in dataset.cells)
    print(
        f"split {args.split}: {len(dataset.cells)} cells, {dataset.n_chromosomes} crops "
        f"in {seconds:.2f} s ({dataset.n_chromosomes / seconds:.0f} crops/s), "
        f"{len(dataset.problems)} problems"
    )
    for karyotype, count in karyotypes.most_common():
        print(f"  {count:4d}  {karyotype}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
