"""Mapping DICOM series to a model's input channels (contrasts) by SeriesDescription / ProtocolName.

Default rules (case-insensitive regular expressions on "SeriesDescription ProtocolName"):

- ``flair``: FLAIR, dark-fluid, TIRM (unless the name also says T1);
- ``t1ce``: a T1 name (T1, MPRAGE, SPGR, BRAVO, VIBE, FLASH, TFE...) with a contrast marker
  (post, +C, C+, Gd, gado, contrast, CE, enhanced), or T1CE / T1C / T1Gd;
- ``t1``: a T1 name without a contrast marker (or with "pre");
- ``t2``: T2 (not T2*, T2 star, SWI, GRE, diffusion, FLAIR).

Overrides, per channel: a SeriesInstanceUID (selects that series) or a regular expression
(searched in the description and protocol name), e.g. ``{"t1ce": "1.2.840.99.3.12.4"}`` or
``{"t1ce": "ax.*post"}``.

A model with one channel takes the series matching its contrast; when none matches, a series
whose name matches no rule at all (e.g. no description) is taken. Every matching series is then
its own input. A multi-channel model needs exactly one series per channel, all on one frame of
reference and one voxel grid; anything else is refused with a message listing the candidates.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gpedge.dicom.series import DicomSeries
from gpedge.errors import InputError


def _word(alternatives: str) -> str:
    """Whole words only; "_" and "-" separate words, as in scanner protocol names."""
    return rf"(?<![a-z0-9])(?:{alternatives})(?![a-z0-9])"


_T1 = r"t1(?![0-9])|" + _word(r"mprage|mp-rage|mp2rage|spgr|fspgr|bravo|vibe|flash|fl3d|tfe|tfl")
_ENHANCED = "|".join((
    _word(r"post|postcontrast|gd|gad|gado\w*|contrast|ce|enh\w*"),
    r"t1\s*[-_]?\s*(?:ce|c|gd|post)(?![a-z0-9])",
    r"\+\s*c(?![a-z0-9])|(?<![a-z0-9])c\s*\+",
))
_PRE = _word(r"pre|precontrast|native|nativ")
_FLAIR = r"flair|dark[-_ ]?fluid|tirm"
_T2 = r"t2(?![0-9])(?!\s*\*)(?!\s*[-_]?\s*star)"
_NOT_T2 = _word(r"swi|swan|gre|susc\w*|dwi|adc")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")


def _search(pattern: str, text: str) -> bool:
    return re.search(pattern, text, re.IGNORECASE) is not None


def classify(series: DicomSeries) -> str | None:
    """The contrast a series' name says (``t1``, ``t1ce``, ``t2``, ``flair``) or None."""
    text = f"{series.description} {series.protocol}"
    t1 = _search(_T1, text)
    if _search(_FLAIR, text) and not t1:
        return "flair"
    if t1:
        return "t1ce" if _search(_ENHANCED, text) and not _search(_PRE, text) else "t1"
    if _search(_T2, text) and not _search(_NOT_T2, text):
        return "t2"
    return None


@dataclass
class ChannelRule:
    """An override for one channel: a SeriesInstanceUID or a regular expression on the series' names."""

    channel: str
    value: str

    def matches(self, series: DicomSeries) -> bool:
        if _UID.match(self.value):
            return series.uid == self.value
        return _search(self.value, f"{series.description} {series.protocol}")


def parse_rules(rules: Mapping[str, str] | Sequence[str] | None, channels: Sequence[str]) -> dict[str, ChannelRule]:
    """``{"t1ce": "1.2.3"}`` or ``["t1ce=1.2.3", "flair=ax.*flair"]`` -> rules by channel, validated."""
    if rules is None:
        return {}
    items = list(rules.items()) if isinstance(rules, Mapping) else [_split(text) for text in rules]
    out: dict[str, ChannelRule] = {}
    for channel, value in items:
        channel = channel.strip().lower()
        if channel not in channels:
            raise InputError(f"series rule '{channel}={value}': the model's channels are {', '.join(channels)}")
        if not _UID.match(value):
            try:
                re.compile(value)
            except re.error as exc:
                raise InputError(f"series rule '{channel}={value}': not a UID nor a valid regular expression ({exc})") from exc
        out[channel] = ChannelRule(channel, value)
    return out


def _split(text: str) -> tuple[str, str]:
    channel, sep, value = text.partition("=")
    if not sep or not channel.strip() or not value.strip():
        raise InputError(f"series rule '{text}': expected CHANNEL=UID or CHANNEL=PATTERN, e.g. t1ce=1.2.840.1234.5")
    return channel, value.strip()


def _label(series: DicomSeries) -> str:
    names = " / ".join(n for n in (series.description, series.protocol) if n) or "no description"
    return f"series {series.number if series.number is not None else series.uid} ({names}; {series.uid})"


def assign(
    study: Sequence[DicomSeries], channels: Sequence[str], rules: Mapping[str, ChannelRule] | None = None
) -> list[dict[str, DicomSeries]]:
    """The inputs of one study: a list of ``{channel: series}`` (several only for one-channel models).

    Raises :class:`InputError` when a channel has no series, a multi-channel model has several
    candidates for one channel, or the chosen series do not share a frame of reference and grid.
    """
    rules = rules or {}
    where = str(study[0].folder) if study else "study"
    candidates: dict[str, list[DicomSeries]] = {}
    for channel in channels:
        rule = rules.get(channel)
        if rule is not None:
            found = [s for s in study if rule.matches(s)]
            if not found:
                raise InputError(
                    f"{where}: no series matches {channel}={rule.value}; the study holds "
                    + "; ".join(_label(s) for s in study)
                )
        else:
            found = [s for s in study if classify(s) == channel]
            if not found and len(channels) == 1:
                found = [s for s in study if classify(s) is None]
            if not found:
                raise InputError(
                    f"{where}: no {channel} series (by SeriesDescription/ProtocolName) among "
                    + "; ".join(f"{_label(s)} -> {classify(s) or 'unknown'}" for s in study)
                    + f"; choose one with --series {channel}=UID (or a pattern)"
                )
        candidates[channel] = found
    if len(channels) == 1:
        return [{channels[0]: s} for s in candidates[channels[0]]]
    for channel, found in candidates.items():
        if len(found) > 1:
            raise InputError(
                f"{where}: {len(found)} series match {channel}: " + "; ".join(_label(s) for s in found)
                + f"; choose one with --series {channel}=UID"
            )
    chosen = {c: found[0] for c, found in candidates.items()}
    check_same_grid(chosen)
    return [chosen]


def check_same_grid(chosen: Mapping[str, DicomSeries]) -> None:
    """Refuse channels that are not on one frame of reference and one voxel grid (no silent mixing)."""
    (first_channel, first), *others = chosen.items()
    for channel, series in others:
        if series.uid == first.uid and len(chosen) > 1:
            raise InputError(f"{series}: the same series is chosen for {first_channel} and {channel}")
        if series.frame_of_reference_uid != first.frame_of_reference_uid:
            raise InputError(
                f"{series} ({channel}) and {first} ({first_channel}) have different frames of reference "
                f"({series.frame_of_reference_uid} vs {first.frame_of_reference_uid}); register them onto one grid first"
            )
        if series.grid is None or first.grid is None or not series.grid.same_display_grid(first.grid):
            raise InputError(
                f"{series} ({channel}) and {first} ({first_channel}) are not on the same voxel grid "
                f"({_grid_text(series)} vs {_grid_text(first)}); resample them onto one grid first"
            )


def _grid_text(series: DicomSeries) -> str:
    grid = series.grid
    if grid is None:
        return "no patient geometry"
    s, h, w = grid.display_shape
    corner = grid.display_affine[:3, 3]
    return f"{s} slices of {h}x{w}, first voxel at ({', '.join(f'{v:.1f}' for v in corner)}) mm"
