"""Markdown summary of ``gpedge bench --out`` JSON files: speed-up over eager PyTorch FP32 at the
same batch, and whether INT8 meets the accuracy bar (label agreement >= 99%, mask Dice >= 0.95).

    python benchmarks/summarise.py benchmarks/results/cpu/*.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

LABEL_BAR = 0.99
DICE_BAR = 0.95
HEADER = (
    "| model | input | backend | load | batch | p50 ms | p90 ms | p99 ms | slices/s | speed-up vs torch | GFLOP/s "
    "| peak RSS MB | labels = | max abs dp | mask Dice (slices) | accuracy bar |"
)


def rows_markdown(rows: list[dict]) -> list[str]:
    base = {r["batch"]: r["p50_ms"] for r in rows if r["backend"] == "torch"}
    lines = []
    for r in rows:
        speedup = f"{base[r['batch']] / r['p50_ms']:.2f}x" if r["batch"] in base else "-"
        gflops = f"{1e3 * r['tflops']:.0f}" if r.get("tflops") else "-"
        bar = "ok" if r["label_agreement"] >= LABEL_BAR and r["mask_dice"] >= DICE_BAR else "FAILS"
        lines.append(
            f"| {r['model']} | {r['input']} | {r['backend']} | {'competing' if r.get('load', 'idle') != 'idle' else 'idle'} "
            f"| {r['batch']} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {r['throughput']:.2f} | {speedup} | {gflops} | {r['peak_mem_mb']:.0f} "
            f"| {r['label_agreement']:.1%} ({r['accuracy_slices']}) | {r['max_prob_diff']:.1e} "
            f"| {r['mask_dice']:.4f} ({r['mask_slices']}) | {bar} |"
        )
    return lines


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    rows = [json.loads(Path(path).read_text()) for path in paths]
    cpus = sorted({r.get("cpu", "CPU not recorded") for file_rows in rows for r in file_rows})
    print(f"CPU: {'; '.join(cpus)}\n")
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for path in paths:
        for line in rows_markdown(json.loads(Path(path).read_text())):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
