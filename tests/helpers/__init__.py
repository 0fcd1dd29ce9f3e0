"""Shared test helpers: synthetic cohorts (group), simulated fMRIPrep trees (participant), the ABIDE data (realdata), DICOM fixtures (dicom)."""
