"""Small helpers every report shares: markdown tables and a description of the machine a number came from."""

from __future__ import annotations

import os
import platform

import torch


def markdown_table(header: list, rows: list) -> str:
    """A GitHub markdown table; ``|`` inside a cell is escaped."""
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what the platform module knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_description(device) -> dict:
    """What a run's JSON records about the machine: Python, platform, torch, device, threads (and GPU)."""
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
        "cpu": f"{cpu_model()} ({os.cpu_count()} cores)",
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_line(device) -> str:
    """:func:`machine_description` as one line, for the head of a markdown report."""
    m = machine_description(device)
    name = f"GPU: {m['gpu']}" if "gpu" in m else f"CPU: {m['cpu']}, torch threads {m['cpu_threads']}"
    return f"{name}; torch {m['torch']}; Python {m['python']}; {m['platform']}"
