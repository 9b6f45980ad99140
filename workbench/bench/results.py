"""Write benchmark results to `benchmarks/` with the date, the machine and the command."""

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


def benchmarks_dir() -> Path:
    return Path(os.environ.get("WORKBENCH_BENCHMARKS_DIR", "benchmarks"))


def write_result(name: str, results: dict[str, Any], *, command: str | None = None) -> Path:
    """Store one run as `benchmarks/<name>-<UTC timestamp>.json` and `<name>-latest.json`."""
    now = datetime.now(UTC)
    payload = {
        "benchmark": name,
        "date": now.isoformat(timespec="seconds"),
        "command": command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine_info(),
        "results": results,
    }
    out = benchmarks_dir()
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n"
    stamped = out / f"{name}-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    stamped.write_text(text, encoding="utf-8")
    (out / f"{name}-latest.json").write_text(text, encoding="utf-8")
    return stamped
