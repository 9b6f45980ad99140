"""Write benchmark results to `benchmarks/` with the date, the machine, the command and the load
average before and after the run."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or None,
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo", encoding="utf-8") as fh:
            kb = int(fh.readline().split()[1])
            info["memory_gib"] = round(kb / 1024**2, 1)
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # torch is optional for some benchmarks
        pass
    return info


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, or None where the system does not give them."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# Taken when the command line imports the benchmarks, before any of them starts, so every
# result records the load its run began under; `mark_run_start` takes it again where a run
# begins later in the process (a test, a script running several benchmarks).
_load_at_start: list[float] | None = load_average()


def mark_run_start() -> None:
    """Record the load average now as the one the next written result started under."""
    global _load_at_start
    _load_at_start = load_average()


def benchmarks_dir() -> Path:
    return Path(os.environ.get("WORKBENCH_BENCHMARKS_DIR", "benchmarks"))


def write_result(
    name: str,
    results: dict[str, Any],
    *,
    command: str | None = None,
    latest: bool = True,
    now: datetime | None = None,
) -> Path:
    """Store one run as `benchmarks/<name>-<UTC timestamp>.json` and `<name>-latest.json`.

    The header holds the date, the command, the machine and the load average (1, 5, 15 min)
    when the run started and when it was written: timings taken on a busy machine are
    pessimistic, and the file has to say so, not the memory of whoever ran it. `latest=False`
    writes the stamped file alone; `now` gives several files of one run the same stamp.
    """
    after = load_average()
    now = now or datetime.now(UTC)
    payload = {
        "benchmark": name,
        "date": now.isoformat(timespec="seconds"),
        "command": command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine_info(),
        "load_average": {"before": _load_at_start, "after": after},
        "results": results,
    }
    out = benchmarks_dir()
    stamped = out / f"{name}-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    stamped.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n"
    stamped.write_text(text, encoding="utf-8")
    if latest:
        (out / f"{name}-latest.json").write_text(text, encoding="utf-8")
    return stamped
