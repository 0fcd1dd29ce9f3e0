"""The group level's methods text (CITATION.md) follows the options of the call: one case per option."""

from __future__ import annotations

import pytest
from helpers.group import group_args

from nmflow.workflows.boilerplate import group_desc, references


def _text(tmp_path, *flags: str) -> str:
    return group_desc(group_args(tmp_path / "bids", tmp_path / "out", *flags))


def test_defaults_say_what_runs(tmp_path):
    text = _text(tmp_path)
    for words in ("cross-fitted over 5 folds", "harmonised with ComBat", "signed deviations (two-sided)",
                  "Benjamini-Hochberg FDR (Benjamini & Hochberg, 1995) at q < 0.05", "max-T rule",
                  "pooled over sites", "masked reconstruction of 20% of the inputs", "at most 150 epochs",
                  "early stopping after 15 epochs"):
        assert words in text, words
    assert "Benjamini Y, Hochberg Y (1995)" in references(text)


@pytest.mark.parametrize("flags, present, absent", [
    (["--p-rule", "raw"], "flagged at uncorrected p < 0.05", "Benjamini"),
    (["--p-rule", "raw", "--single-case-rule", "fdr"], "Benjamini-Hochberg FDR (Benjamini & Hochberg, 1995) at q",
     "Benjamini-Hochberg FDR (Benjamini & Hochberg, 1995) at q < 0.05; single"),
    (["--alpha", "0.01"], "at q < 0.01", "q < 0.05"),
    (["--single-case-rule", "raw"], "flagged with uncorrected p < 0.05", "max-T"),
    (["--test-score", "absolute"], "on absolute deviations", "two-sided"),
    (["--z-scale", "site"], "within the subject's site", "pooled over sites"),
    (["--harmonize", "none"], "root mean square", "ComBat"),
    (["--folds", "3"], "cross-fitted over 3 folds", "5 folds"),
    (["--split-file", "split.tsv"], "a fixed split (`--split-file`)", "folds"),
    (["--covariates", "age", "sex"], "autoencoder (inputs also age and sex)", "autoencoder,"),
    (["--mask-fraction", "0"], "plain reconstruction", "masked"),
    (["--epochs", "40", "--patience", "4"], "at most 40 epochs with early stopping after 4 epochs", "150"),
    (["--init-model", "m.safetensors"], "fine-tuned from the pretrained model `m.safetensors`", "applied without"),
    (["--init-model", "m.safetensors", "--no-fine-tune"], "`m.safetensors`, applied without further training",
     "early stopping"),
])
def test_each_option_changes_the_text(tmp_path, flags, present, absent):
    text = _text(tmp_path, *flags)
    assert present in text
    assert absent not in text
