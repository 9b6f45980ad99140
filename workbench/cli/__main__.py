"""`python -m workbench.cli` runs the CLI (serve starts its worker this way)."""

from workbench.cli import main

main()
