"""Evaluation of model packages (``gpedge evaluate``).

- :mod:`~gpedge.evaluate.metrics`: classification metrics, smoothed Dice/IoU, healthy FP rate, pointing game.
- :mod:`~gpedge.evaluate.bootstrap`: patient-level bootstrap CI of the median Dice.
- :mod:`~gpedge.evaluate.selection`: the package's split of a data set, mapped onto its classes.
- :mod:`~gpedge.evaluate.sweep`: mask-offset sweep, each offset run through the ``Predictor``.
- :mod:`~gpedge.evaluate.scoring`: per-slice outcomes and segmentation metrics of a split.
- :mod:`~gpedge.evaluate.posthoc` / :mod:`~gpedge.evaluate.comparison`: Grad-CAM and Grad-CAM++ vs
  the inherent heatmaps (torch).
- :mod:`~gpedge.evaluate.overlays`, :mod:`~gpedge.evaluate.plots`, :mod:`~gpedge.evaluate.report`:
  overlay examples, PNG figures, Markdown and HTML report.
- :mod:`~gpedge.evaluate.runner`: the pipeline behind the command, through one runtime ``Predictor``.
"""
