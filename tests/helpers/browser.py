"""Render HTML reports in headless Chromium (Debian's ``chromium`` package) for the report tests.

:func:`load_page` returns the page's DOM after its scripts ran and the
console messages (errors included) Chromium logged; :func:`screenshot`
writes a PNG.  Tests call :func:`require_chromium` first: it skips with the
reason when the browser is absent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=3000"]
CONSOLE = re.compile(r":CONSOLE[^\]]*\] \"(?P<message>.*)\", source: (?P<source>\S*)")


def chromium() -> str | None:
    """The Chromium executable, or None."""
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def require_chromium() -> str:
    exe = chromium()
    if exe is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install chromium)")
    return exe


@dataclass
class Page:
    dom: str
    console: list[str]

    @property
    def errors(self) -> list[str]:
        """Console messages that are script errors or failed loads."""
        return [m for m in self.console if re.search(r"Uncaught|Error|Failed to load|not allowed", m, re.I)]


def load_page(page: Path, timeout: float = 90) -> Page:
    """The DOM of ``page`` after its scripts ran, and Chromium's console log."""
    run = subprocess.run([require_chromium(), *FLAGS, "--enable-logging=stderr", "--v=0", "--dump-dom",
                          Path(page).absolute().as_uri()], capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr[-2000:]
    return Page(run.stdout, [m.group("message") for m in CONSOLE.finditer(run.stderr)])


def screenshot(page: Path, png: Path, width: int = 1400, height: int = 3000, timeout: float = 90) -> Path:
    """A PNG of ``page`` as a ``width`` x ``height`` window."""
    run = subprocess.run([require_chromium(), *FLAGS, f"--screenshot={png}", f"--window-size={width},{height}",
                          Path(page).absolute().as_uri()], capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0 and Path(png).stat().st_size > 0, run.stderr[-2000:]
    return Path(png)


def missing_links(page: Path, dom: str) -> list[str]:
    """Local files the page refers to (``src``/``href``, relative or ``file://``) that do not exist."""
    missing = []
    for ref in re.findall(r'(?:src|href)="([^"#?]+)', dom):
        parsed = urlparse(ref)
        if parsed.scheme in ("http", "https", "data", "javascript", "mailto"):
            continue
        target = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(page).parent / unquote(ref)
        if not target.exists():
            missing.append(ref)
    return missing
