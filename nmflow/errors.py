"""Exceptions that carry one user-facing line."""


class NmflowInputError(ValueError):
    """Bad user input: the message names the file and the problem in one line."""

    def __init__(self, path, problem):
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
