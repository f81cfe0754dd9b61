"""What happened: one record per step and per compile target, the ratchet's state, and the final decision.

Plain dataclasses on the floor below the registry and the flows, so the MLflow
tracker, the reports and the Prefect flow all read the same records (and
Prefect can cache them: they pickle).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from ratchet.core.variant import Variant
from ratchet.hardware.parity import Parity
from ratchet.tasks.compare import Comparison
from ratchet.tasks.gate import GateDecision
from ratchet.tasks.measure import Measurement

# "inconclusive": the measurement could not tell whether the candidate is faster (the machine was too unstable);
# like a rejection it leaves the champion where it is, unlike one it says nothing against the candidate.
Decision = Literal["baseline", "measured", "accepted", "rejected", "inconclusive", "skipped", "failed"]
CompileStatus = Literal["measured", "compiled", "skipped", "failed"]


@dataclass
class StepRecord:
    """What happened at one step: the decision, why, and what was measured."""

    step: str
    kind: str | None
    decision: Decision
    reason: str
    settings: dict = field(default_factory=dict)
    variant: Variant | None = None
    measurement: Measurement | None = None
    comparison: Comparison | None = None  # paired, against the champion it was made from
    gate: GateDecision | None = None
    champion_before: str | None = None
    attempts: int = 0  # paired comparisons made (more than one: the first were inconclusive)


@dataclass
class RatchetState:
    """The baseline, the current champion, and every record so far (baseline first)."""

    baseline: StepRecord
    champion: StepRecord
    records: list[StepRecord]

    @classmethod
    def start(cls, baseline: StepRecord) -> "RatchetState":
        return cls(baseline, baseline, [baseline])

    def advance(self, records: list[StepRecord]) -> "RatchetState":
        """The ratchet: only an accepted candidate moves the champion (a search accepts at most one)."""
        accepted = [r for r in records if r.decision == "accepted"]
        assert len(accepted) <= 1, "pick_winner leaves at most one accepted candidate per step"
        return replace(self, champion=accepted[0] if accepted else self.champion, records=[*self.records, *records])

    def lineage(self) -> list[StepRecord]:
        """The champion's record, then its ancestors' (newest first), down to the baseline."""
        by_name = {r.variant.name: r for r in self.records if r.variant is not None and r.measurement is not None}
        names = [self.champion.variant.name, *reversed(self.champion.variant.lineage)]
        return [by_name[n] for n in names if n in by_name]


@dataclass
class FinalDecision:
    champion: StepRecord
    gate: GateDecision
    comparison: Comparison | None = None  # paired, champion against the baseline (when a target asks for a speed-up)
    attempts: int = 0

    @property
    def targets_met(self) -> bool:
        return self.gate.passed

    @property
    def inconclusive(self) -> bool:
        return self.gate.inconclusive


@dataclass
class CompileRecord:
    """What happened to one compile target: status, why, and what was measured."""

    target: str
    backend: str
    status: CompileStatus
    reason: str
    settings: dict = field(default_factory=dict)
    backend_version: str = ""
    source: str | None = None
    variant: Variant | None = None
    measurement: Measurement | None = None
    parity: Parity | None = None
    comparison: Comparison | None = None  # paired, against the champion (recorded, not required)
    gate: GateDecision | None = None
