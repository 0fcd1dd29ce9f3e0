"""Public statistics of nmflow: the Crawford-Howell single-case test (implemented in :mod:`nmflow.group.stats`)."""

from nmflow.group.stats import CrawfordHowellResult, benjamini_hochberg, crawford_howell, crawford_howell_summary

__all__ = ["CrawfordHowellResult", "benjamini_hochberg", "crawford_howell", "crawford_howell_summary"]
