"""Memory and device of the group level's heavy steps (``--mem-gb``, ``--device``).

Kept free of torch at import (the CLI checks the flags before a run).
"""

from __future__ import annotations

import os

GIB = 2 ** 30


def available_memory_gb() -> float:
    """Memory the machine can give a new process now (GiB): ``MemAvailable`` of ``/proc/meminfo``,
    else the physical memory."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB


def resident_bytes() -> int:
    """Resident memory of this process now (bytes; 0 where ``/proc`` is absent)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; other values unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
