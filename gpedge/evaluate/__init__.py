"""Evaluation of model packages (``gpedge evaluate``).

- :mod:`~gpedge.evaluate.metrics`: classification metrics, smoothed Dice/IoU, healthy FP rate, pointing game.
- :mod:`~gpedge.evaluate.bootstrap`: patient-level bootstrap CI of the median Dice.
- :mod:`~gpedge.evaluate.sweep`: mask-offset sweep on precomputed heatmaps.
- :mod:`~gpedge.evaluate.posthoc` / :mod:`~gpedge.evaluate.comparison`: Grad-CAM and Grad-CAM++ vs
  the inherent heatmaps (torch).
- :mod:`~gpedge.evaluate.plots` / :mod:`~gpedge.evaluate.report`: PNG figures, Markdown and HTML report.
- :mod:`~gpedge.evaluate.runner`: the pipeline behind the command, through the runtime ``Predictor``.
"""
