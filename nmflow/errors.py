"""Exceptions that carry one user-facing line."""


class NmflowInputError(ValueError):
    """Bad user input: the message names the file and the problem in one line."""

    def __init__(self, path, problem):
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class StrategyError(NmflowInputError):
    """A denoising strategy cannot run on one run (too few volumes left, a confound column it needs is absent):
    that strategy is skipped for that run, its other strategies go on."""
