"""The node's processing function: a received study through ``gpedge.dicom.process_study``."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gpedge.serve.worker import Processed


class StudyProcessor:
    """Classify a study's received instances with ``predictor`` and write SEG, Parametric Map and
    SR into the job's folder (``channel_rules``: see ``gpedge.dicom``; a study sent again replaces
    its earlier results); thread-safe."""

    def __init__(self, predictor, channel_rules=None) -> None:
        self.predictor = predictor
        self.channel_rules = channel_rules

    def __call__(self, files: Sequence[Path], out_dir: Path) -> Processed:
        from gpedge.dicom import process_study

        study = process_study(
            self.predictor, list(files), out_dir, channel_rules=self.channel_rules, dicom_out=True, overwrite=True
        )
        return Processed(dicom_files=[Path(p) for p in study.paths.values()], summary=study.to_dict())
