"""The bad-input tables (tests/test_bad_input*.py): one row per way to break an input.

A row says how to break it, which file the message must name, which words the
one message line holds, and what must still finish.  Every row is checked the
same way: the exit code, exactly one ``nmflow: error:`` line about it (naming
the file, holding the words), no traceback, nothing partial written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Row:
    """One bad input.

    Attributes
    ----------
    breaks : callable
        Breaks a copy of a valid input; receives what the table's fixture gives (files, folders).
    names : str
        Key of the file the message names (in what ``breaks`` receives), or ``""`` for none.
    says : tuple of str
        Words of the message line.
    args : tuple of str
        Extra command-line arguments.
    finishes : str
        What must still finish (for the README's table).
    """

    breaks: Callable
    names: str
    says: tuple[str, ...]
    args: tuple[str, ...] = field(default=())
    finishes: str = "nothing else runs; nothing is written"


def message_line(stderr: str, named: str, says: tuple[str, ...], kind: str = "error") -> str:
    """The one ``nmflow: <kind>:`` line of ``stderr`` naming ``named``; checks its words and that no traceback
    was printed."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith(f"nmflow: {kind}:") and named in ln]
    assert len(lines) == 1, f"expected one {kind} line naming {named!r}:\n{stderr}"
    for word in says:
        assert word.lower() in lines[0].lower(), f"{word!r} not in {lines[0]!r}"
    return lines[0]
