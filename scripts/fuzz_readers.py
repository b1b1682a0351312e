"""The long fuzz run of every reader (the bounded one is ``tests/test_fuzz_readers.py``).

Mutates the seeds of ``tests/fuzz_readers.py`` (PNG, JPEG, TIFF, DICOM file, DICOM series and
enhanced multi-frame object through discovery and geometry, NIfTI) round-robin for ``--seconds``
and counts the outcomes: read, refused with a GpedgeError, or a raw exception (its type and the
line that raised it; the mutated file is kept under ``--keep`` for each new signature). Writes a
JSON summary; exits 1 if any raw exception was seen.

    python scripts/fuzz_readers.py --seconds 300 --out docs/results/fuzz-readers.json
"""
from __future__ import annotations

import argparse
import collections
import json
import platform
import random
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fuzz_readers import KINDS, Choices, make_seeds, mutate, read  # noqa: E402

from gpedge.cpus import cpu_description  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "fuzz-readers.json")
    parser.add_argument("--keep", type=Path, default=Path(tempfile.gettempdir()) / "gpedge-fuzz-crashes")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rng = random.Random(args.seed)
    choose = Choices(rng.randint)
    outcomes: dict[str, collections.Counter] = {kind: collections.Counter() for kind in KINDS}
    raw: collections.Counter = collections.Counter()
    with tempfile.TemporaryDirectory(prefix="gpedge-fuzz-") as tmp:
        seeds = make_seeds(Path(tmp) / "seeds")
        start = time.monotonic()
        while time.monotonic() - start < args.seconds:
            for kind in KINDS:
                seed = seeds[kind]
                mutated = mutate(seed, choose)
                try:
                    outcomes[kind][read(seed, mutated, Path(tmp) / "input")] += 1
                except Exception as exc:  # the point: count what escapes
                    frame = traceback.extract_tb(exc.__traceback__)[-1]
                    signature = f"{kind}: {type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}"
                    if not raw[signature]:
                        args.keep.mkdir(parents=True, exist_ok=True)
                        (args.keep / f"{len(raw):03d}-{seed.target}").write_bytes(mutated)
                    raw[signature] += 1
                    outcomes[kind]["raw exception"] += 1
        elapsed = time.monotonic() - start
    total = sum(sum(c.values()) for c in outcomes.values())
    summary = {
        "command": f"python scripts/fuzz_readers.py --seconds {args.seconds:g} --seed {args.seed}",
        "machine": f"{cpu_description()}, Python {platform.python_version()}",
        "seconds": round(elapsed, 1),
        "inputs": total,
        "raw_exceptions": sum(raw.values()),
        "raw_signatures": dict(raw),
        "by_kind": {kind: dict(counter) for kind, counter in outcomes.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "by_kind"}, indent=2))
    return 1 if raw else 0


if __name__ == "__main__":
    sys.exit(main())
