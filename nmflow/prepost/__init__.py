"""Stimulus study (pre/post): the stimulus, the GLM, the PRE/POST split, FC change, seed maps, single cases.

A patient is scanned at rest while a brief stimulus is applied during the run;
the question is how the networks reorganise after it, for one patient against
controls.  Science lives in plain functions here; the Nipype interfaces are in
:mod:`nmflow.interfaces.glm` and :mod:`nmflow.interfaces.prepost`, the
workflows in :mod:`nmflow.workflows.prepost`.
"""
