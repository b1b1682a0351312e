"""Evaluation figures as PNG files (matplotlib object API with the Agg canvas; no pyplot, no display)."""
from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn import metrics as skm

from gpedge.atomic import atomic_write_bytes

DPI = 110


@dataclass
class OverlayExample:
    """One slice for the overlay grid: a grey image, ground truth and predicted masks."""

    title: str
    image: np.ndarray
    truth: np.ndarray
    predicted: np.ndarray


def _save(fig: Figure, path: str | os.PathLike) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str | os.PathLike) -> None:
    """Counts and row-normalised shading (recall per true class)."""
    cm = np.asarray(matrix, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(class_names)
    fig = Figure(figsize=(1.3 * k + 2.2, 1.2 * k + 1.6))
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(cm[i, j])}\n{share[i, j]:.0%}", ha="center", va="center",
                    color="white" if share[i, j] > 0.55 else "black", fontsize=9)
    ax.set_xticks(range(k), class_names, rotation=30, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Confusion matrix (share of true class)")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    _save(fig, path)


def roc_and_pr(
    y_true: Sequence[int], probabilities: np.ndarray, class_names: Sequence[str], roc_path: str | os.PathLike, pr_path: str | os.PathLike
) -> None:
    """One-vs-rest ROC and precision-recall curves, one line per class present in ``y_true``."""
    y = np.asarray(y_true)
    prob = np.asarray(probabilities)
    roc_fig = Figure(figsize=(5, 4.4))
    roc_ax = roc_fig.subplots()
    pr_fig = Figure(figsize=(5, 4.4))
    pr_ax = pr_fig.subplots()
    roc_ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--")
    for k, name in enumerate(class_names):
        positives = y == k
        if not positives.any():
            continue
        if (~positives).any():
            fpr, tpr, _ = skm.roc_curve(positives, prob[:, k])
            roc_ax.plot(fpr, tpr, lw=1.6, label=f"{name} (AUC {skm.auc(fpr, tpr):.3f})")
        precision, recall, _ = skm.precision_recall_curve(positives, prob[:, k])
        ap = skm.average_precision_score(positives, prob[:, k])
        pr_ax.step(recall, precision, where="post", lw=1.6, label=f"{name} (AP {ap:.3f})")
    for ax, title, xlabel, ylabel in (
        (roc_ax, "ROC, one vs rest", "false-positive rate", "true-positive rate"),
        (pr_ax, "Precision-recall, one vs rest", "recall", "precision"),
    ):
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right" if ax is roc_ax else "lower left", fontsize=8)
    _save(roc_fig, roc_path)
    _save(pr_fig, pr_path)


def dice_by_class(dice: Sequence[float], labels: Sequence[int], class_names: Sequence[str], path: str | os.PathLike) -> None:
    """Box plot with jittered points of per-slice Dice, grouped by true class (tumour slices only)."""
    d, lab = np.asarray(dice, dtype=float), np.asarray(labels)
    groups = [(name, d[lab == k]) for k, name in enumerate(class_names) if np.any(lab == k)]
    fig = Figure(figsize=(1.4 * max(len(groups), 1) + 2.5, 4))
    ax = fig.subplots()
    if groups:
        ax.boxplot([g for _, g in groups], widths=0.5, showfliers=False, medianprops={"color": "tab:red", "lw": 2})
        jitter = np.random.default_rng(0)
        for i, (_, values) in enumerate(groups, start=1):
            ax.scatter(i + jitter.uniform(-0.15, 0.15, values.size), values, s=8, alpha=0.45, color="tab:blue", lw=0)
        ax.set_xticks(range(1, len(groups) + 1), [f"{name}\n(n={g.size})" for name, g in groups])
    else:
        ax.text(0.5, 0.5, "no tumour slices with ground truth", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("Dice (tumour slices)")
    ax.set_title("Dice per slice by true class")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def dice_vs_confidence(dice: Sequence[float], confidence: Sequence[float], rho: float | None, path: str | os.PathLike) -> None:
    """Scatter of per-slice Dice against the predicted class probability, with Spearman's rho."""
    fig = Figure(figsize=(5, 4.2))
    ax = fig.subplots()
    ax.scatter(confidence, dice, s=16, alpha=0.6, lw=0)
    ax.margins(x=0.05)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("classification confidence (probability of the predicted class)")
    ax.set_ylabel("Dice (tumour slices)")
    rho_text = "n/a" if rho is None else f"{rho:.3f}"
    ax.set_title(f"Dice vs confidence (Spearman rho = {rho_text})")
    ax.grid(alpha=0.3)
    _save(fig, path)


def overlays(examples: Sequence[OverlayExample], path: str | os.PathLike) -> None:
    """Grid of slices with ground-truth (green) and predicted (red) mask outlines."""
    n = max(len(examples), 1)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = Figure(figsize=(3.2 * cols, 3.6 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, ex in zip(axes.flat, examples):
        ax.imshow(ex.image, cmap="gray", interpolation="nearest")
        for mask, colour in ((ex.truth, "lime"), (ex.predicted, "red")):
            if np.any(mask) and not np.all(mask):
                ax.contour(np.asarray(mask, dtype=float), levels=[0.5], colors=colour, linewidths=1.2)
        ax.set_title(ex.title, fontsize=9)
    handles = [Line2D([], [], color="lime", lw=2, label="ground truth"), Line2D([], [], color="red", lw=2, label="predicted mask")]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False, fontsize=9)
    _save(fig, path)


def evaluation_figures(metrics: dict, outcomes: Sequence, examples: Sequence[OverlayExample], out_dir: Path) -> dict[str, str]:
    """Every figure of the evaluation report as PNGs in ``out_dir``; returns figure key -> file name.

    ``outcomes`` are :class:`gpedge.evaluate.scoring.SliceOutcome` records, ``examples`` the overlays.
    """
    classes = metrics["model"]["classes"]
    tumour = [o for o in outcomes if o.tumour]
    files = {
        "confusion": "confusion_matrix.png",
        "roc": "roc_curves.png",
        "pr": "pr_curves.png",
        "dice_by_class": "dice_by_class.png",
        "dice_vs_confidence": "dice_vs_confidence.png",
    }
    confusion_matrix(metrics["confusion_matrix"], classes, out_dir / files["confusion"])
    labels = np.array([o.label for o in outcomes])
    roc_and_pr(labels, np.stack([o.probabilities for o in outcomes]), classes, out_dir / files["roc"], out_dir / files["pr"])
    dice_by_class([o.dice for o in tumour], [o.label for o in tumour], classes, out_dir / files["dice_by_class"])
    dice_vs_confidence(
        [o.dice for o in tumour], [o.confidence for o in tumour],
        metrics["dice_vs_confidence_spearman"]["rho"], out_dir / files["dice_vs_confidence"],
    )
    if examples:
        files["overlays"] = "overlays.png"
        overlays(examples, out_dir / files["overlays"])
    return files
