"""Split combined `bench al` result files into one file per configuration in benchmarks/al/.

Each piece keeps its original's date, machine and command, names the file it came from, and
holds that configuration's summary from the run (its paired tests compare it with the margin
run beside it). Usage: python benchmarks/split_al_results.py [--delete] FILE...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from workbench.bench.al import configuration_piece, configuration_slug


def split_file(path: Path, out_dir: Path) -> list[Path]:
    """Write one `al/<slug>-<original stamp>.json` per strategy of the combined file `path`."""
    original = json.loads(path.read_text(encoding="utf-8"))
    if original.get("benchmark") != "al":
        raise SystemExit(
            f"{path}: expected a `bench al` result, found {original.get('benchmark')!r}"
        )
    stamp = path.stem.removeprefix("al-")
    written = []
    for name in original["results"]["strategies"]:
        piece: dict[str, Any] = {
            "benchmark": "al",
            "date": original["date"],
            "command": original["command"],
            "machine": original["machine"],
            # Not recorded by the runs of 2026-11-25/26: the header field came later.
            "load_average": original.get("load_average"),
            "split_from": path.name,
            "results": configuration_piece(original["results"], name, path.name),
        }
        target = out_dir / f"{configuration_slug(name)}-{stamp}.json"
        text = json.dumps(piece, indent=2, ensure_ascii=False) + "\n"
        if target.exists() and target.read_text(encoding="utf-8") != text:
            raise SystemExit(f"{target} exists with other content; not overwritten")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="combined al-<stamp>.json files")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/al"), help="piece folder")
    parser.add_argument("--delete", action="store_true", help="delete each original once split")
    args = parser.parse_args()
    for path in args.files:
        pieces = split_file(path, args.out)
        print(f"{path}: {len(pieces)} configurations -> {args.out}/")
        if args.delete:
            path.unlink()


if __name__ == "__main__":
    main()
