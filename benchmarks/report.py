"""Append a benchmark's results to benchmarks/RESULTS.md: one dated section, labelled with the machine it ran on.

The benchmark scripts call it when run with `--write` (they print the same lines either way):

    python benchmarks/capture_overhead.py --write

It is imported only then, from beside the script (`from report import append_results`).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().with_name("RESULTS.md")

HEADER = """# Benchmark results

Written by the benchmark scripts in this folder, not by hand: `python benchmarks/NAME.py --write` prints its
results as usual and appends them here as a dated section, labelled with the machine it ran on. Newest last.
"""


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_label() -> str:
    """One line naming where a benchmark ran: OS and architecture, CPU and core count, GPU, Python and torch.

    >>> "CPUs" in machine_label() and "torch" in machine_label()
    True
    """
    parts = [f"{platform.system()} {platform.machine()}", f"{_cpu_name()}, {os.cpu_count()} CPUs"]
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name()} (CUDA {torch.version.cuda})")
    else:
        parts.append("no GPU")
    parts.append(f"Python {platform.python_version()}")
    if torch is not None:
        parts.append(f"torch {torch.__version__}")
    return ", ".join(parts)


def append_results(title: str, lines, *, path=RESULTS, command: str | None = None,
                   when: dt.date | None = None) -> Path:
    """Append one section to `path` (RESULTS.md, made with its header when missing); returns the path.

    Args:
      title: what was measured, usually the script's name.
      lines: the results as printed: a string, or a sequence of lines.
      command: how it was run (default: this process's command line, with the script's path relative to the
        repository when it is inside it).
      when: the date (default today).
    """
    path = Path(path)
    text = lines if isinstance(lines, str) else "\n".join(lines)
    if command is None:
        argv = list(sys.argv)
        script = Path(argv[0]).resolve() if argv and argv[0] else None
        root = RESULTS.parents[1]
        if script is not None and script.is_relative_to(root):
            argv[0] = str(script.relative_to(root))
        command = "python " + shlex.join(argv)
    section = (f"\n## {(when or dt.date.today()).isoformat()}: {title}\n\n"
               f"- machine: {machine_label()}\n- command: `{command}`\n\n"
               f"```text\n{text.rstrip()}\n```\n")
    if not path.is_file():
        path.write_text(HEADER)
    with path.open("a") as f:
        f.write(section)
    return path
