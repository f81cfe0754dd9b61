"""The hardware profile a pipeline runs on: what it is, and what an hour of it costs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class HardwareSpec(BaseModel):
    """Where variants are measured; ``price_per_hour`` turns throughput into cost."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("local-cpu", description="Label recorded with every measurement and cache key.")
    device: Literal["cpu", "cuda"] = "cpu"
    price_per_hour: float = Field(0.10, ge=0, description="USD per hour of this machine.")
    threads: int | None = Field(None, ge=1, description="Intra-op threads; None keeps the runtime's default.")
    cpus: list[int] | None = Field(None, min_length=1, description="CPU cores the benchmark workers are pinned to "
                                   "(Linux); None: every core this process may use.")
