"""From scanner DICOM folders to an anonymised BIDS dataset.

``scan`` reads headers, ``inventory`` proposes an editable CSV plan,
``plan`` reads it back, ``heuristic`` turns it into a heudiconv heuristic,
``convert`` runs heudiconv + dcm2niix, ``anonymize`` scrubs the outputs and
``bidsfiles`` writes the dataset-level files.
"""
