"""The pipeline spec's ``registry`` section: where the runs go and what the champion is registered as."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RegistrySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tracking_uri: str = Field("sqlite:///mlruns/ratchet.db", description="MLflow tracking URI (MLFLOW_TRACKING_URI overrides).")
    experiment: str = "ratchet"
    model_name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    alias: str = Field("champion", pattern=r"^[A-Za-z0-9_\-]+$")
