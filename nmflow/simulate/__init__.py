"""Synthetic fMRIPrep derivatives with planted ground truth.

The simulator itself (:mod:`nmflow.simulate.dataset`, NumPy, pandas, nibabel)
loads on first use of one of its names here, so that the subcommands' parsers
read :mod:`nmflow.simulate.settings` alone.
"""

from nmflow.simulate.settings import SimulationSettings

__all__ = ["SimulationSettings", "simulate_dataset", "truth_dir_for"]


def __getattr__(name: str):
    if name in ("simulate_dataset", "truth_dir_for"):
        from nmflow.simulate import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
