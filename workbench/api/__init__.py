"""The HTTP API (FastAPI on uvicorn): health, pre-publish scans; thin over workbench.services."""
