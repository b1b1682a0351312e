"""Benchmark rows as a rich table (the CLI's default output)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich import box
from rich.table import Table

_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # header, row key, format
    ("backend", "backend", "{}"),
    ("batch", "batch", "{}"),
    ("p50", "p50_ms", "{:.2f}"),
    ("p99", "p99_ms", "{:.2f}"),
    ("slices/s", "throughput", "{:.1f}"),
    ("pre/infer/post", "", ""),
    ("RSS MB", "peak_mem_mb", "{:.0f}"),
    ("GPU MB", "device_mem_mb", "{:.0f}"),
    ("TFLOP/s", "tflops", "{:.3f}"),
    ("labels", "label_agreement", "{:.1%}"),
    ("max dp", "max_prob_diff", "{:.1e}"),
    ("Dice", "mask_dice", "{:.4f}"),
)


_CAPTION = (
    "times in ms (p50/p99 end to end; pre/infer/post: medians per stage); RSS: peak host memory of the "
    "backend's own process; labels/max dp/Dice: label agreement, largest probability difference and mean mask "
    "Dice against the FP32 reference"
)


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    if not key:
        return "/".join(f"{row[f'{stage}_ms']:.2f}" for stage in ("preprocess", "inference", "postprocess"))
    value = row.get(key)
    return "-" if value is None else fmt.format(value)


def rows_table(rows: Sequence[dict[str, Any]]) -> Table:
    """A table of benchmark rows, titled with the model, input and FLOP count of the first row."""
    first = rows[0] if rows else {}
    gflop = first.get("gflop")
    title = f"{first.get('model', '')} {first.get('input', '')}"
    if gflop is not None:
        title += f", {gflop:.2f} GFLOP/slice"
    if first:
        title += f", {first.get('threads')} threads, accuracy vs {first.get('accuracy_reference')} on {first.get('accuracy_slices')} slices"
        title += f"\n{first.get('cpu', '')}, {first.get('load', 'idle')}"
    table = Table(title=title.strip(), caption=_CAPTION, box=box.SIMPLE_HEAD)
    on_device = any(row.get("device_mem_mb") is not None for row in rows)
    columns = [c for c in _COLUMNS if on_device or c[1] != "device_mem_mb"]
    for header, _, _ in columns:
        table.add_column(header, justify="left" if header == "backend" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(_cell(row, key, fmt) for _, key, fmt in columns))
    return table


_VOLUME_STAGES = ("read", "preprocess", "inference", "postprocess", "write", "total")


def volume_table(rows: Sequence[dict[str, Any]]) -> Table:
    """A table of whole-volume rows: milliseconds per stage for each backend."""
    first = rows[0] if rows else {}
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"{first.get('volume', '')}: {first.get('slices', 0)} slices, batch {first.get('batch', '')}\n"
              f"{first.get('cpu', '')}, {first.get('load', 'idle')}",
        caption="milliseconds per stage (preprocess and inference: median over the repeats)",
    )
    table.add_column("backend")
    for stage in _VOLUME_STAGES:
        table.add_column(stage, justify="right")
    table.add_column("slices/s", justify="right")
    for row in rows:
        rate = row["slices"] * 1e3 / row["inference_ms"] if row["inference_ms"] > 0 else float("nan")
        table.add_row(row["backend"], *(f"{row[f'{stage}_ms']:.1f}" for stage in _VOLUME_STAGES), f"{rate:.0f}")
    return table
