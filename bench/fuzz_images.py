"""Fuzz the crop loader with mutated crop files: it may decode or refuse, nothing else.

.venv/bin/python bench/fuzz_images.py [--data ../shared/data/gband612] [--iterations 5000]
                                      [--seed 0] [--with-generated] [--save FOLDER]

Real crop files (or, where ``--data`` is absent, generated crops in every format the
loader reads) are mutated: bit flips, truncation, duplicated chunks, inserted and deleted
bytes, random header bytes, changed dimensions in the PNG IHDR / TIFF tags / BMP and JPEG
headers, huge declared sizes, zero-length files. Each mutated file is written to a temp
folder and read with ``read_crop`` in a worker process, so a hard crash of a decoder
(segfault, abort) or a hang is caught, reported and its input saved, and the run goes on.
Outcomes: decoded (a 2-D uint8 array), refused (CropReadError naming the file), other
(any other exception, a wrong result, a refusal that does not name the file), hang, crash.
Exits 1 when anything but decoded or refused occurred.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import io
import json
import os
import resource
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from karyo_gui.core.images import (
    MAX_CROP_SIDE,
    MIN_CROP_SIDE,
    CropReadError,
    decode_crop,
    is_image_file,
    read_crop,
)
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.synthetic import generate_crop

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gband612"
OUTCOMES = ("decoded", "refused", "other", "hang", "crash")
BAD_OUTCOMES = ("other", "hang", "crash")
Rng = np.random.Generator

# --------------------------------------------------------------------------- the originals


def generated_crop_files(rng: Rng, count: int = 6) -> list[tuple[str, bytes]]:
    """Generated crops encoded in every format and pixel layout the loader reads."""
    files = []
    for index in range(count):
        chromosome_type = ChromosomeType(int(rng.integers(0, len(ChromosomeType))))
        crop = generate_crop(chromosome_type, rng)
        files.extend((f"gen{index}_{name}", data) for name, data in encodings(crop).items())
    return files


def encodings(crop: np.ndarray) -> dict[str, bytes]:
    """One crop as png (grey, RGB, palette), tiff (LZW, 16-bit, grey+alpha), bmp and jpg."""
    def pillow(image: Image.Image, fmt: str, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        return buffer.getvalue()

    def opencv(suffix: str, image: np.ndarray) -> bytes:
        ok, encoded = cv2.imencode(suffix, image)
        if not ok:
            raise RuntimeError(f"cannot encode {suffix}")
        return encoded.tobytes()

    grey = Image.fromarray(crop)
    alpha = Image.fromarray(np.where(crop > 240, 0, 255).astype(np.uint8))
    return {
        "grey.png": opencv(".png", crop),
        "rgb.png": opencv(".png", cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)),
        "palette.png": pillow(grey.convert("P"), "PNG", transparency=255),
        "lzw.tiff": pillow(grey, "TIFF", compression="tiff_lzw"),
        "16bit.tif": pillow(Image.fromarray(crop.astype(np.uint16) * 257), "TIFF"),
        "alpha.tif": pillow(Image.merge("LA", (grey, alpha)), "TIFF", compression="tiff_lzw"),
        "grey.bmp": opencv(".bmp", crop),
        "grey.jpg": opencv(".jpg", crop),
    }


def real_crop_files(data: Path, rng: Rng, count: int) -> list[tuple[str, bytes]]:
    """``count`` crop files picked at random under ``data`` (all of them when fewer)."""
    paths = sorted(path for path in data.rglob("*") if path.is_file() and is_image_file(path))
    picked = rng.permutation(len(paths))[:count]
    return [(paths[k].name, paths[k].read_bytes()) for k in sorted(picked)]


# --------------------------------------------------------------------------- mutations


def flip_bits(data: bytes, rng: Rng) -> bytes:
    mutated = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        position = int(rng.integers(0, len(mutated)))
        mutated[position] ^= 1 << int(rng.integers(0, 8))
    return bytes(mutated)


def truncate(data: bytes, rng: Rng) -> bytes:
    return data[: int(rng.integers(0, len(data)))]


def duplicate_chunk(data: bytes, rng: Rng) -> bytes:
    start = int(rng.integers(0, len(data)))
    chunk = data[start : start + int(rng.integers(1, 257))]
    where = int(rng.integers(0, len(data) + 1))
    return data[:where] + chunk * int(rng.integers(1, 4)) + data[where:]


def insert_bytes(data: bytes, rng: Rng) -> bytes:
    where = int(rng.integers(0, len(data) + 1))
    return data[:where] + rng.bytes(int(rng.integers(1, 17))) + data[where:]


def delete_bytes(data: bytes, rng: Rng) -> bytes:
    start = int(rng.integers(0, len(data)))
    return data[:start] + data[start + int(rng.integers(1, 65)) :]


def header_bytes(data: bytes, rng: Rng) -> bytes:
    """Random values in the first 64 bytes, where every format keeps its header."""
    mutated = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        mutated[int(rng.integers(0, min(64, len(mutated))))] = int(rng.integers(0, 256))
    return bytes(mutated)


def zero_length(data: bytes, rng: Rng) -> bytes:
    return b""


def _dimension(rng: Rng, huge: bool) -> int:
    if huge:
        return int(rng.choice([MAX_CROP_SIDE + 1, 65535, 2**24, 2**31 - 1, 2**32 - 1]))
    return int(rng.choice([0, 1, 2, 3, int(rng.integers(4, 300)), MAX_CROP_SIDE]))


def _png_dimensions(data: bytes, rng: Rng, huge: bool) -> bytes | None:
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR" or len(data) < 33:
        return None
    header = bytearray(data[16:29])  # width, height, depth, colour type, ... of IHDR
    field = int(rng.integers(0, 3))
    if field in (0, 2):
        header[0:4] = struct.pack(">I", _dimension(rng, huge))
    if field in (1, 2):
        header[4:8] = struct.pack(">I", _dimension(rng, huge))
    if rng.random() < 0.3:  # bit depth or colour type too
        header[int(rng.integers(8, 10))] = int(rng.choice([0, 1, 2, 3, 4, 6, 8, 16, 255]))
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + header))  # a valid CRC: Pillow reads on
    return data[:16] + bytes(header) + crc + data[33:]


_TIFF_TAGS = (256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 338, 339)


def _tiff_dimensions(data: bytes, rng: Rng, huge: bool) -> bytes | None:
    """A changed size, depth, strip offset/size, compression... tag in the first IFD."""
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(data[:4])
    if order is None or len(data) < 8:
        return None
    ifd = struct.unpack(order + "I", data[4:8])[0]
    if ifd + 2 > len(data):
        return None
    count = struct.unpack(order + "H", data[ifd : ifd + 2])[0]
    entries = []
    for k in range(count):
        at = ifd + 2 + 12 * k
        if at + 12 > len(data):
            break
        tag, kind = struct.unpack(order + "HH", data[at : at + 4])
        if tag in _TIFF_TAGS and (huge is False or tag in (256, 257, 273, 279)):
            entries.append((at, kind))
    if not entries:
        return None
    at, kind = entries[int(rng.integers(0, len(entries)))]
    value = _dimension(rng, huge) if rng.random() < 0.7 else int(rng.integers(0, 2**16))
    mutated = bytearray(data)
    if kind == 3:  # SHORT: the value sits in the first two bytes of the field
        mutated[at + 8 : at + 10] = struct.pack(order + "H", min(value, 65535))
    else:
        mutated[at + 8 : at + 12] = struct.pack(order + "I", value & 0xFFFFFFFF)
    if rng.random() < 0.2:  # the count of values too
        mutated[at + 4 : at + 8] = struct.pack(order + "I", int(rng.integers(0, 2**16)))
    return bytes(mutated)


def _bmp_dimensions(data: bytes, rng: Rng, huge: bool) -> bytes | None:
    if not data.startswith(b"BM") or len(data) < 30:
        return None
    mutated = bytearray(data)
    width, height = _dimension(rng, huge), _dimension(rng, huge)
    if rng.random() < 0.5:
        height = -min(height, 2**31 - 1)  # top-down rows
    mutated[18:22] = struct.pack("<I", width & 0xFFFFFFFF)
    mutated[22:26] = struct.pack("<i", max(min(height, 2**31 - 1), -(2**31)))
    if rng.random() < 0.3:
        mutated[28:30] = struct.pack("<H", int(rng.choice([0, 1, 4, 8, 16, 24, 32, 64])))
    return bytes(mutated)


def _jpeg_dimensions(data: bytes, rng: Rng, huge: bool) -> bytes | None:
    if not data.startswith(b"\xff\xd8"):
        return None
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0 and at + 9 <= len(data):
            mutated = bytearray(data)
            mutated[at + 5 : at + 7] = struct.pack(">H", min(_dimension(rng, huge), 65535))
            mutated[at + 7 : at + 9] = struct.pack(">H", min(_dimension(rng, huge), 65535))
            return bytes(mutated)
    return None


def _declared_size(data: bytes, rng: Rng, huge: bool) -> bytes:
    for edit in (_png_dimensions, _tiff_dimensions, _bmp_dimensions, _jpeg_dimensions):
        mutated = edit(data, rng, huge)
        if mutated is not None:
            return mutated
    return header_bytes(data, rng)  # a format without a known header: scramble it


def changed_dimensions(data: bytes, rng: Rng) -> bytes:
    return _declared_size(data, rng, huge=False)


def huge_declared_size(data: bytes, rng: Rng) -> bytes:
    return _declared_size(data, rng, huge=True)


MUTATIONS: dict[str, Callable[[bytes, Rng], bytes]] = {
    "bit flips": flip_bits,
    "truncation": truncate,
    "chunk duplication": duplicate_chunk,
    "byte insertion": insert_bytes,
    "byte deletion": delete_bytes,
    "header bytes": header_bytes,
    "dimensions": changed_dimensions,
    "huge declared size": huge_declared_size,
    "zero length": zero_length,
}
_WEIGHTS = np.array([3, 2, 1, 1, 1, 2, 3, 2, 0.1])


def mutate(data: bytes, rng: Rng) -> tuple[str, bytes]:
    """One to three mutations of a file, named by the first."""
    names = list(MUTATIONS)
    how_many = int(rng.choice([1, 1, 1, 2, 3]))
    picks = rng.choice(len(names), size=how_many, p=_WEIGHTS / _WEIGHTS.sum())
    for k in picks:
        data = MUTATIONS[names[k]](data, rng) if data else data
    return names[picks[0]], data


# --------------------------------------------------------------------------- one decode


def outcome_of(path: str) -> tuple[str, str]:
    """(outcome, detail) of reading one crop file in this process."""
    try:
        image = read_crop(path)
    except CropReadError as error:
        if error.path != path or os.path.basename(path) not in str(error):
            return "other", f"refusal does not name the file: {error}"
        return "refused", error.reason
    except Exception as error:  # the finding this fuzzer looks for
        return "other", f"{type(error).__name__}: {error}"
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 2:
        return "other", f"wrong result {type(image).__name__} {getattr(image, 'shape', '')}"
    if not MIN_CROP_SIDE <= min(image.shape) <= max(image.shape) <= MAX_CROP_SIDE:
        return "other", f"decoded a crop of {image.shape}, outside the size limits"
    return "decoded", f"{image.shape[1]} x {image.shape[0]}"


def worker(memory_limit_mb: int, fault_log: Path) -> int:
    """Read paths from stdin, one per line; answer each with one JSON line."""
    with fault_log.open("a") as faults:
        # a segfault or abort writes the Python stack there before the process dies
        faulthandler.enable(file=faults)
        warnings.simplefilter("ignore")  # Pillow's "Corrupt EXIF data" etc. are not findings
        return _answer_paths(memory_limit_mb)


def _answer_paths(memory_limit_mb: int) -> int:
    # Pillow imports a format's plugin on first use: do that here, not in the first timing
    for data in encodings(np.full((8, 8), 255, np.uint8)).values():
        decode_crop(data)
    if memory_limit_mb > 0:
        limit = memory_limit_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for line in sys.stdin:
        path = line.rstrip("\n")
        start = time.perf_counter()
        outcome, detail = outcome_of(path)
        answer = {
            "outcome": outcome,
            "detail": detail[:300],
            "seconds": time.perf_counter() - start,
            "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }
        print(json.dumps(answer), flush=True)
    return 0


# --------------------------------------------------------------------------- the run


class Worker:
    """A decoding process; a crash or hang costs it, never the run."""

    def __init__(self, memory_limit_mb: int, fault_log: Path) -> None:
        command = [sys.executable, __file__, "--worker", "--fault-log", str(fault_log),
                   "--memory-limit-mb", str(memory_limit_mb)]
        self.process = subprocess.Popen(
            # libtiff's own messages on stderr are noise here: the answers say what happened
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
        )

    def decode(self, path: Path, timeout: float) -> dict:
        assert self.process.stdin and self.process.stdout
        try:
            self.process.stdin.write(f"{path}\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return self._died()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            self.process.kill()
            self.process.wait()
            detail = f"no answer in {timeout:.0f} s"
            return {"outcome": "hang", "detail": detail, "seconds": timeout}
        line = self.process.stdout.readline()
        if not line:
            return self._died()
        return json.loads(line)

    def _died(self) -> dict:
        code = self.process.wait()
        how = f"signal {-code}" if code < 0 else f"exit status {code}"
        return {"outcome": "crash", "detail": f"worker died ({how})", "seconds": 0.0}

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        assert self.process.stdin and self.process.stdout
        with contextlib.suppress(BrokenPipeError):  # a crashed worker's pipe is gone
            self.process.stdin.close()  # a live worker's loop ends, and so does it
        self.process.wait()
        self.process.stdout.close()


@dataclass
class Finding:
    outcome: str
    mutation: str
    original: str
    detail: str
    saved: Path


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    if args.data.is_dir():
        originals = real_crop_files(args.data, rng, args.originals)
        origin = f"{len(originals)} crop files from {args.data}"
    else:
        originals = generated_crop_files(rng)
        origin = f"{len(originals)} generated crop files ({args.data} not found)"
    if args.with_generated and args.data.is_dir():
        originals += generated_crop_files(rng)
        origin += " and generated crops in every format (png, tiff, bmp, jpg)"
    if not originals:
        print(f"no crop files under {args.data}", file=sys.stderr)
        return 2
    args.save.mkdir(parents=True, exist_ok=True)
    table: dict[str, Counter[str]] = {name: Counter() for name in MUTATIONS}
    findings: list[Finding] = []
    slowest = (0.0, "", "", b"")  # seconds, file, mutation, contents
    peak_rss_kb = 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="karyo-fuzz-") as folder:
        fault_log = Path(folder) / "faults.log"
        worker_process = Worker(args.memory_limit_mb, fault_log)
        for iteration in range(args.iterations):
            name, original = originals[int(rng.integers(0, len(originals)))]
            mutation, data = mutate(original, rng)
            path = Path(folder) / f"{iteration:06d}_{name}"
            path.write_bytes(data)
            if not worker_process.alive:
                worker_process.close()
                worker_process = Worker(args.memory_limit_mb, fault_log)
            answer = worker_process.decode(path, args.timeout)
            outcome = answer["outcome"]
            table[mutation][outcome] += 1
            peak_rss_kb = max(peak_rss_kb, answer.get("rss_kb", 0))
            if answer["seconds"] > slowest[0]:
                slowest = (answer["seconds"], path.name, mutation, data)
            if outcome in BAD_OUTCOMES:
                saved = args.save / f"{outcome}_{path.name}"
                shutil.copy(path, saved)
                findings.append(Finding(outcome, mutation, name, answer["detail"], saved))
            path.unlink()
        worker_process.close()
        faults = fault_log.read_text(errors="replace") if fault_log.exists() else ""
    (args.save / f"slowest_{slowest[1]}").write_bytes(slowest[3])
    seconds = (time.perf_counter() - started, time.perf_counter() - start)
    report(args, origin, table, findings, slowest, peak_rss_kb, seconds, faults)
    return 1 if findings else 0


def report(
    args: argparse.Namespace,
    origin: str,
    table: dict[str, Counter[str]],
    findings: list[Finding],
    slowest: tuple[float, str, str, bytes],
    peak_rss_kb: int,
    seconds: tuple[float, float],
    faults: str,
) -> None:
    print(f"$ {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"originals: {origin}; {args.iterations} mutated files, seed {args.seed}")
    print(f"{'mutation':<20}" + "".join(f"{name:>9}" for name in ("files", *OUTCOMES)))
    total: Counter[str] = Counter()
    for mutation, counts in table.items():
        total.update(counts)
        print(f"{mutation:<20}{sum(counts.values()):>9}"
              + "".join(f"{counts[name]:>9}" for name in OUTCOMES))
    print(f"{'total':<20}{sum(total.values()):>9}" + "".join(f"{total[n]:>9}" for n in OUTCOMES))
    print(f"peak RSS of the decoding process: {peak_rss_kb / 1024:.0f} MiB")
    print(f"slowest decode: {slowest[0] * 1000:.1f} ms ({slowest[2]}, "
          f"saved as {args.save / ('slowest_' + slowest[1])})")
    whole, fuzzing = seconds
    print(f"wall time: {whole:.1f} s, of which {fuzzing:.1f} s mutating and decoding "
          f"({args.iterations / fuzzing:.0f} files/s)")
    for finding in findings:
        print(f"{finding.outcome.upper()}: {finding.mutation} of {finding.original}: "
              f"{finding.detail}\n  input saved as {finding.saved}")
    if faults.strip():
        print("stack of the crashed decoder (faulthandler):\n" + faults[-4000:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder of real crop files (generated crops when absent)")
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--originals", type=int, default=200,
                        help="how many real crop files to pick for mutating")
    parser.add_argument("--with-generated", action="store_true",
                        help="mutate generated crops in every format too (real data is tiff)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds one decode may take before it counts as a hang")
    parser.add_argument("--memory-limit-mb", type=int, default=2048,
                        help="address-space limit of the decoding process (0: none)")
    parser.add_argument("--save", type=Path,
                        default=Path(tempfile.gettempdir()) / "karyo-fuzz-findings",
                        help="where inputs that crashed, hung or failed are kept")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fault-log", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.memory_limit_mb, args.fault_log)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
