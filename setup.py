"""Package discovery for the wheel; everything else is in pyproject.toml.

Packages are found, never listed by hand: a hand-written list once left three packages out of the
wheel, and `tests/test_wheel.py` now builds the wheel and imports every module from it.
migrations/ sits at the top level of the repository, where Alembic users look for it, and ships
inside the wheel as `workbench.migrations`, so an installed workbench always finds its revisions.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["workbench", "workbench.*"])
    + ["workbench.migrations"]
    + [f"workbench.migrations.{name}" for name in find_packages(where="migrations")]
)
