"""The wheel users install holds every module of the tree and imports from itself.

`make test` installs the project in editable mode, which reads the source tree and so cannot see a
package left out of the wheel (three once were, and `workbench` from `pip install .` failed with
ModuleNotFoundError). This test builds the wheel from a copy of the tracked tree and imports every
module from the unpacked wheel, never from the source folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _tree_files() -> list[str]:
    """Tracked and new (not ignored) files, as a fresh clone plus this change would have them."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [p for p in out.stdout.splitlines() if (ROOT / p).is_file()]


def _expected_wheel_path(path: str) -> str | None:
    """Where a source file of the tree lands in the wheel (None: not shipped)."""
    if path.startswith("workbench/"):
        return path
    if path.startswith("migrations/"):
        return "workbench/" + path
    return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for rel in _tree_files():
        dest = src / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(src)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (found,) = out.glob("workbench-*.whl")
    return found


def test_wheel_holds_every_module_and_data_file_of_the_tree(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        shipped
        for rel in _tree_files()
        if (shipped := _expected_wheel_path(rel)) is not None
        and not rel.endswith((".pyc", ".md"))
        and "__pycache__" not in rel
    }
    missing = sorted(expected - names)
    assert not missing, f"files of the tree missing from the wheel: {missing}"


def test_every_module_imports_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    modules = sorted(
        ".".join(Path(n).with_suffix("").parts).removesuffix(".__init__")
        for n in zipfile.ZipFile(wheel).namelist()
        if n.startswith("workbench/")
        and n.endswith(".py")
        and not n.endswith("__main__.py")
        # Alembic revision scripts are loaded by Alembic from files, never imported by name.
        and not n.startswith("workbench/migrations/")
    )
    probe = (
        "import importlib, json, sys\n"
        f"sys.path.insert(0, {str(site)!r})\n"
        "out = {}\n"
        f"for name in {modules!r}:\n"
        "    try:\n"
        "        out[name] = importlib.import_module(name).__file__\n"
        "    except Exception as exc:\n"
        "        out[name] = 'ERROR ' + type(exc).__name__ + ': ' + str(exc)\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    files = json.loads(result.stdout.strip().splitlines()[-1])
    failed = {m: f for m, f in files.items() if f is None or f.startswith("ERROR")}
    assert not failed, failed
    outside = {m: f for m, f in files.items() if not f.startswith(str(site))}
    assert not outside, f"imported from outside the wheel: {outside}"
    # The migrations ship as a package Alembic can find, with their template.
    assert (site / "workbench" / "migrations" / "script.py.mako").is_file()
    assert any((site / "workbench" / "migrations" / "versions").glob("0001_*.py"))
