"""Orchestration: the pipeline spec, the ratchet loop, the Prefect flow and the CLI."""
