"""Synthetic fMRIPrep derivatives with planted ground truth."""

from nmflow.simulate.dataset import SimulationSettings, simulate_dataset, truth_dir_for

__all__ = ["SimulationSettings", "simulate_dataset", "truth_dir_for"]
