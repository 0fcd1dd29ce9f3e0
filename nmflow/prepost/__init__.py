"""Stimulus study (pre/post): the stimulus, the GLM, the PRE/POST split, FC change, seed maps, single cases.

A patient is scanned at rest while a brief stimulus is applied during the run;
the question is how the networks reorganise after it, for one patient against
controls.  Science lives in plain functions here, a level's steps in
:mod:`~nmflow.prepost.participant` and :mod:`~nmflow.prepost.group`, the
flags' defaults in :mod:`~nmflow.prepost.settings`; the Nipype interfaces
that call them are in :mod:`nmflow.interfaces.prepost_participant` and
:mod:`nmflow.interfaces.prepost_group`, the workflows in
:mod:`nmflow.workflows.prepost`.
"""
