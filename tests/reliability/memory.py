"""A process's memory from the kernel's own accounting (/proc/<pid>/status), for peak-RSS bounds.

`reset_peak` writes 5 to /proc/<pid>/clear_refs, which sets the peak (VmHWM) back to the current RSS, so
`peak_growth_mib` measures what one operation added, whatever the process did before it."""

from __future__ import annotations

from pathlib import Path


def _status_kib(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def rss_mib(pid: int | str = "self") -> float:
    return _status_kib(pid, "VmRSS") / 1024


def peak_mib(pid: int | str = "self") -> float:
    return _status_kib(pid, "VmHWM") / 1024


def reset_peak(pid: int | str = "self") -> float:
    """Reset the process's peak RSS to its current RSS; return that RSS in MiB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return rss_mib(pid)
