"""Alembic migrations, shipped inside the package as `workbench.migrations`."""
