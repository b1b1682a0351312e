"""Evaluation report as Markdown and self-contained HTML with the same content.

The report is built as a list of blocks (heading, paragraph, table, figure) and rendered
twice, so the two files cannot drift apart. Figures are PNGs beside the report.
"""
from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpedge.atomic import atomic_write_bytes
from gpedge.package import class_bias_text


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[Any]]


@dataclass
class Image:
    file: str
    caption: str


Block = Heading | Paragraph | Table | Image

METHOD_NAMES = {"inherent": "inherent GP heatmap", "grad_cam": "Grad-CAM", "grad_cam_pp": "Grad-CAM++"}


def fmt(value: Any, digits: int = 3) -> str:
    """Format a table cell: floats to ``digits`` decimals, None as 'n/a'."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _markdown(blocks: Sequence[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(block.header) + " |")
            lines.append("|" + "|".join(" --- " for _ in block.header) + "|")
            lines += ["| " + " | ".join(fmt(c).replace("|", "\\|") for c in row) + " |" for row in block.rows]
            lines.append("")
        else:
            lines += [f"![{block.caption}]({block.file})", "", f"*{block.caption}*", ""]
    return "\n".join(lines)


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 980px; margin: 2em auto;
       padding: 0 1em; color: #1d2327; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
th, td { border: 1px solid #c8ccd0; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #eef1f4; }
figure { margin: 1em 0 1.6em; }
figure img { max-width: 100%; }
figcaption { font-style: italic; color: #50575e; font-size: 0.9em; }
code { background: #f3f4f6; padding: 0 0.2em; }
"""


def _html(title: str, blocks: Sequence[Block]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in row) + "</tr>" for row in block.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        else:
            parts.append(
                f'<figure><img src="{html.escape(block.file)}" alt="{html.escape(block.caption)}">'
                f"<figcaption>{html.escape(block.caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(out_dir: str | os.PathLike, title: str, blocks: Sequence[Block]) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``out_dir`` atomically; return their paths."""
    out = Path(out_dir)
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_bytes(md_path, _markdown([Heading(title, 1), *blocks]).encode())
    atomic_write_bytes(html_path, _html(title, [Heading(title, 1), *blocks]).encode())
    return md_path, html_path


def _ci_text(ci: Sequence[float] | None) -> str:
    return "n/a" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def evaluation_blocks(metrics: dict[str, Any], figures: dict[str, str]) -> list[Block]:
    """The report's content from ``metrics.json`` and the figure files (key -> file name)."""
    model, data = metrics["model"], metrics["data"]
    blocks: list[Block] = [
        Paragraph(
            f"Model {model['arch']} ({model['package']}, package sha256 {model['package_sha256'][:16]}…), "
            f"backend {metrics['backend']}; data {data['path']} ({data['format']}), split '{data['split']}': "
            f"{metrics['num_slices']} slices of {metrics['num_patients']} patients. gpedge {metrics['gpedge_version']}, "
            f"{metrics['created']}."
        ),
    ]
    if data["missing_patients"]:
        blocks.append(Paragraph(f"{len(data['missing_patients'])} patient(s) of the split are not in the data set and were skipped."))
    if data.get("ids_shared_with_training"):
        blocks.append(Paragraph(
            f"{data['ids_shared_with_training']} patient ID(s) of the data set are also training or validation IDs of the "
            "package; --split external vouches that they are other patients."
        ))
    blocks += [
        Heading("Summary"),
        Table(
            ["metric", "value"],
            [
                ["accuracy", metrics["accuracy"]],
                ["F1 macro", metrics["f1_macro"]],
                ["F1 weighted", metrics["f1_weighted"]],
                ["Dice median (tumour slices)", metrics["dice_median"]],
                ["Dice 95% CI", _ci_text(metrics["dice_ci95"])],
                ["IoU median", metrics["iou_median"]],
                ["Dice median after clean-up", metrics["cleanup"]["dice_median"]],
                ["healthy-slice FP rate", metrics["healthy_fp_rate"]],
                ["healthy-slice FP rate after clean-up", metrics["cleanup"]["healthy_fp_rate"]],
                ["mask rule", metrics["mask_rule"]],
                ["mask offset", metrics["offset"]],
                ["class bias", class_bias_text(metrics["model"]["classes"], metrics["model"]["class_bias"])],
                ["tumour / healthy slices", f"{metrics['tumour_slices']} / {metrics['healthy_slices']}"],
            ],
        ),
        Paragraph(f"{metrics['dice_definition']}. Masks: {metrics['mask_source']}."),
    ]
    if metrics["dice_ci_method"]:
        blocks.append(Paragraph(f"Confidence interval: {metrics['dice_ci_method']}."))
    blocks += [
        Heading("Classification"),
        Table(
            ["class", "precision", "recall", "F1", "support", "ROC AUC", "AP", "Dice median"],
            [
                [name, c["precision"], c["recall"], c["f1"], c["support"], c["roc_auc"], c["average_precision"],
                 metrics["dice_per_class_median"][name]]
                for name, c in metrics["per_class"].items()
            ],
        ),
        Image(figures["confusion"], "Confusion matrix: counts and share of each true class."),
        Image(figures["roc"], "One-vs-rest ROC curves."),
        Image(figures["pr"], "One-vs-rest precision-recall curves."),
        Heading("Weakly-supervised segmentation"),
        Image(figures["dice_by_class"], "Dice per tumour slice, by true class."),
    ]
    rho = metrics["dice_vs_confidence_spearman"]
    blocks += [
        Paragraph(
            f"Dice vs classification confidence: Spearman rho {fmt(rho['rho'])} "
            f"(p {'n/a' if rho['p_value'] is None else format(rho['p_value'], '.2g')}, "
            f"n {rho['n']} tumour slices)."
        ),
        Image(figures["dice_vs_confidence"], "Dice against the probability of the predicted class."),
    ]
    if "overlays" in figures:
        blocks.append(Image(figures["overlays"], "Best, median and worst Dice slices: ground truth (green) and predicted mask (red)."))
    sweep = metrics["offset_sweep"]
    if sweep:
        blocks += [
            Heading("Mask-rule sweep"),
            Paragraph(
                f"On the {sweep['split']} split ({sweep['slices']} slices, {sweep['patients']} patient(s)); {sweep['criterion']}. "
                f"Chosen rule {sweep['best_rule']} with offset {sweep['best_offset']} (was {sweep['previous_rule']} with "
                f"{sweep['previous_offset']}), written to the package manifest."
            ),
            Table(
                ["rule", "best offset", "Dice median (called tumour)", "Dice median", "IoU median", "healthy FP rate"],
                [[name, r["offset"], r["dice_median_called"], r["dice_median"], r["iou_median"], r["healthy_fp_rate"]]
                 for name, r in sweep["per_rule"].items()],
            ),
            Table(
                ["rule", "offset", "Dice median (called tumour)", "Dice median", "IoU median", "healthy FP rate",
                 "tumour slices (called tumour)", "healthy slices"],
                [[r["rule"], r["offset"], r["dice_median_called"], r["dice_median"], r["iou_median"], r["healthy_fp_rate"],
                  f"{r['tumour_slices']} ({r['called_tumour_slices']})", r["healthy_slices"]] for r in sweep["table"]],
            ),
        ]
    blocks.append(Heading("Inherent heatmaps vs post-hoc explanations"))
    posthoc = metrics["posthoc_comparison"]
    if "skipped" in posthoc:
        blocks.append(Paragraph(f"Skipped: {posthoc['skipped']}."))
    else:
        blocks += [
            Paragraph(
                f"{posthoc['slices']} tumour slices; {posthoc['network']}; {posthoc['target']}. Masks: {posthoc['mask_rule']}. "
                f"Pointing game: share of slices whose map maximum lies within {posthoc['pointing_tolerance']} "
                "of the ground-truth mask."
            ),
            Table(
                ["method", "Dice median", "IoU median", "pointing game"],
                [[METHOD_NAMES.get(name, name), m["dice_median"], m["iou_median"], m["pointing_game"]]
                 for name, m in posthoc["methods"].items()],
            ),
        ]
    return blocks
