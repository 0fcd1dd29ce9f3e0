"""The demo's verdict on its truth table: the benchmark's range at the planted effect size."""

import pandas as pd

from nmflow.demo import EXPECTED, expectations


def test_expectations_pick_the_planted_effect_size_and_flag_a_run_outside_the_range():
    planted = pd.DataFrame({"group": ["A"] * 3 + ["B"] * 3, "d": [0.7, 0.85, 1.6, 1.0, 0.95, 1.3]})
    scores = pd.DataFrame({"model": ["autoencoder", "autoencoder", "linear"], "group": ["A", "B", "B"],
                           "recall": [0.25, 0.25, 0.75], "fdp": [0.0, 0.0, 0.30]})
    a, b, lin = expectations(scores, planted)
    assert "planted median d 0.85; at d = 0.8" in a and "within that range" in a  # lowest recall at 0.8: 0.13
    low = EXPECTED["autoencoder"][1.0][1]
    assert "at d = 1.0" in b and f"lowest {low:.2f}" in b and "recall 0.25, FDP 0.00) is OUTSIDE" in b
    assert "FDP 0.30) is OUTSIDE" in lin  # above the benchmark's highest FDP
