"""DICOM in and out: series discovery and geometry, channel mapping, SEG / Parametric Map / SR results.

Reading needs only pydicom (a runtime dependency); writing DICOM results needs highdicom
(``pip install 'gpedge[dicom]'``). See docs/dicom.md.
"""
from gpedge.dicom.series import DicomSeries, find_series
from gpedge.dicom.study import DicomStudy, StudyResult, process_study, read_study, studies

__all__ = ["DicomSeries", "DicomStudy", "StudyResult", "find_series", "process_study", "read_study", "studies"]
