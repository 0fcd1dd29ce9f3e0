"""Nipype workflows: participant, group."""
