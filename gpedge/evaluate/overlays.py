"""The overlay figure's examples: best, median and worst Dice tumour slices, re-predicted for their masks."""
from __future__ import annotations

from typing import Any

from gpedge.evaluate.plots import OverlayExample
from gpedge.evaluate.scoring import SliceOutcome


def overlay_examples(predictor: Any, outcomes: list[SliceOutcome], subset: Any, per_kind: int = 2) -> list[OverlayExample]:
    """Up to ``per_kind`` best, median and worst Dice tumour slices of ``subset``, through ``predictor``."""
    ranked = sorted((o for o in outcomes if o.tumour), key=lambda o: (o.dice, o.index))
    if not ranked:
        return []
    middle = max(0, len(ranked) // 2 - per_kind // 2)
    picks = {"best": ranked[::-1][:per_kind], "median": ranked[middle : middle + per_kind], "worst": ranked[:per_kind]}
    chosen: list[tuple[str, SliceOutcome]] = []
    for kind, group in picks.items():
        chosen += [(kind, o) for o in group if all(o is not seen for _, seen in chosen)]
    samples = [subset[o.index] for _, o in chosen]
    results = predictor.predict([s["image"] for s in samples])
    classes = predictor.classes
    return [
        OverlayExample(
            title=f"{kind}: {o.patient} slice {o.slice}\nDice {o.dice:.3f}, {classes[o.label]} → "
            f"{classes[o.predicted]} ({o.confidence:.2f})",
            image=result.image,
            truth=sample["mask"],
            predicted=result.mask,
        )
        for (kind, o), sample, result in zip(chosen, samples, results)
    ]
