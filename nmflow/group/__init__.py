"""The group level's science as plain functions: features, harmonisation, fitting, scoring, statistics, selection.

The normative models themselves live in :mod:`nmflow.normative`; the Nipype
interfaces that call these functions in :mod:`nmflow.interfaces`, their wiring
in :mod:`nmflow.workflows.group`.
"""
