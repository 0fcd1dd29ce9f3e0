"""Series that would convert to invalid or useless BIDS data.

Three problems are looked for among the series to convert: a ``phasediff``
fieldmap without a magnitude image in its session (an incomplete fieldmap,
invalid BIDS), a functional series of one volume, and an implausible age
(0 or above 110 years: a phantom, or a wrong birth date).  The inventory
proposes such series as ``include=no`` with a warning; a conversion of series
the user set to ``include=yes`` anyway warns again.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PLAUSIBLE_AGE = 110.0


@dataclass(frozen=True)
class SeriesFacts:
    """What the checks read of one series to convert."""

    session: tuple[str, str]
    datatype: str
    suffix: str
    n_volumes: int | None
    age: float | None


def unusable(series: list[SeriesFacts]) -> dict[int, str]:
    """Problems of the series to convert, by their position in ``series``.

    Parameters
    ----------
    series : list of SeriesFacts
        Every series that would be converted (the fieldmap check looks for a
        magnitude image among them).

    Returns
    -------
    dict of int -> str
        One problem per series that has one.
    """
    with_magnitude = {s.session for s in series if s.datatype == "fmap" and s.suffix.startswith("magnitude")}
    problems = {}
    for index, item in enumerate(series):
        if item.age is not None and not 0 < item.age <= MAX_PLAUSIBLE_AGE:
            problems[index] = f"implausible age {item.age:g} (a phantom, or a wrong birth date?)"
        elif item.datatype == "func" and item.suffix == "bold" and item.n_volumes is not None and item.n_volumes < 2:
            problems[index] = f"functional series of {item.n_volumes} volume (not a usable run)"
        elif item.suffix == "phasediff" and item.session not in with_magnitude:
            problems[index] = "phasediff fieldmap without its magnitude image (incomplete fieldmap, invalid BIDS)"
    return problems
