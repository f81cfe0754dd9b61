"""Registries: the generic name -> plugin table, and the MLflow model registry glue."""
