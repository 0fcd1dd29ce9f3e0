"""Normative modelling of functional connectivity on healthy controls."""
