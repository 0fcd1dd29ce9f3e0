"""Propose a BIDS datatype/suffix/entities for one DICOM series.

The proposal is only a starting point: it is written to the editable CSV and
the user's edits win at conversion time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nmflow.dicom.scan import Series


@dataclass(frozen=True)
class Proposal:
    """Proposed BIDS destination of a series (``include=False`` means ignored)."""

    include: bool
    datatype: str = ""
    suffix: str = ""
    entities: str = ""
    reason: str = ""


def _ignored(reason: str) -> Proposal:
    return Proposal(include=False, reason=reason)


def _mentions(text: str, *words: str) -> bool:
    """True if a word is a token of ``text`` (or a substring, for words of 4+ chars)."""
    tokens = set(re.split(r"[^a-z0-9]+", text))
    return any(word in tokens or (len(word) >= 4 and word in text) for word in words)


def _direction(text: str) -> str:
    for token in re.split(r"[^a-z0-9]+", text):
        if token in ("ap", "pa", "lr", "rl", "si", "is"):
            return f"dir-{token.upper()}"
    return ""


def _join(*entities: str) -> str:
    return "_".join(e for e in entities if e)


def _task(text: str, description: str) -> tuple[str, str]:
    if _mentions(text, "rest", "resting"):
        return "task-rest", "resting-state BOLD"
    label = re.sub(r"[^A-Za-z0-9]", "", description)[:20] or "unknown"
    return f"task-{label}", "BOLD; task label guessed from the description"


def classify(series: Series) -> Proposal:
    """Propose where a series goes in BIDS.

    Parameters
    ----------
    series : Series
        One DICOM series.

    Returns
    -------
    Proposal
        Included T1w/T2w/FLAIR, rest (or other task) BOLD, fieldmaps and DWI;
        everything else ignored with the reason.
    """
    head = series.first
    text = f"{head.series_description} {head.protocol_name}".lower()
    image_type = set(head.image_type)
    if head.modality != "MR" or not head.is_image:
        return _ignored(f"not an MR image series (modality {head.modality or 'unknown'})")
    if _mentions(text, "scout", "localizer", "localiser", "survey", "aahead", "loc"):
        return _ignored("localizer")
    if image_type & {"DERIVED", "MPR", "MOCO", "ADC", "FA", "TRACEW", "PROJECTION IMAGE"}:
        return _ignored("derived or reconstructed images")
    if _mentions(text, "fmap", "fieldmap", "field", "b0map", "topup", "sefm"):
        if _mentions(text, "epi", "topup", "sefm", "se") or _direction(text):
            return Proposal(True, "fmap", "epi", _direction(text) or "dir-AP",
                            "spin-echo EPI fieldmap; check the dir- entity")
        if image_type & {"P", "PHASE"}:
            return Proposal(True, "fmap", "phasediff", reason="fieldmap phase difference")
        return Proposal(True, "fmap", "magnitude", reason="fieldmap magnitude")
    if _mentions(text, "dwi", "dti", "diff", "diffusion") or "DIFFUSION" in image_type:
        return Proposal(True, "dwi", "dwi", _direction(text), "diffusion")
    if _mentions(text, "bold", "rest", "resting", "fmri", "func") or (
            "EP" in head.scanning_sequence.split("\\") and series.n_volumes > 1):
        task, reason = _task(text, head.series_description or head.protocol_name)
        suffix = "sbref" if _mentions(text, "sbref") else "bold"
        return Proposal(True, "func", suffix, task, reason)
    if _mentions(text, "flair"):
        return Proposal(True, "anat", "FLAIR", reason="FLAIR")
    if _mentions(text, "t1", "t1w", "mprage", "mp-rage", "spgr", "bravo", "tfl3d"):
        return Proposal(True, "anat", "T1w", reason="T1-weighted")
    if _mentions(text, "t2", "t2w", "space", "tse"):
        return Proposal(True, "anat", "T2w", reason="T2-weighted")
    return _ignored("not recognised; set include/datatype/suffix to convert it")
