"""A candidate measured against a reference in interleaved blocks: the evidence every speed verdict rests on.

Both variants are loaded and warmed up in worker processes of their own
(``hardware.benchmark.session``) and kept alive for the whole comparison; they
then run short blocks of the workload's requests in ABBA order
(``hardware.benchmark.paired``), at the workload's first batch size and in its
scenario. The result keeps every block's latencies, the paired ratio of each
statistic a block is large enough for, and the conditions: which machine
(``hardware.benchmark.machine``), which threads and cores each worker used,
and when. A comparison that could not be made says why (``error``) instead of
raising, so the gate can record it as a failed criterion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.evals.workloads import Workload, WorkloadSpec
from ratchet.hardware.benchmark.machine import fingerprint
from ratchet.hardware.benchmark.paired import STATS, PairedRatio, abba_order, min_block_queries, paired_ratio
from ratchet.hardware.benchmark.session import WorkerSession
from ratchet.hardware.environments import EnvironmentBuildError, WorkerError
from ratchet.tasks.gate import NoiseSpec
from ratchet.tasks.measure import ProgressFn, served_requests


@dataclass
class Comparison:
    """``candidate`` against ``reference`` (the champion, or the baseline at the final gate), paired block by block."""

    reference: str
    candidate: str
    reference_role: str  # "champion" or "baseline": how reasons name the reference
    ratios: dict[str, PairedRatio] = field(default_factory=dict)  # block statistic -> paired ratio
    blocks: dict[str, list[list[float]]] = field(default_factory=dict, repr=False)  # "reference"/"candidate" -> latencies
    pairs: int = 0
    block_queries: int = 0
    batch_size: int = 1
    machine: dict[str, Any] = field(default_factory=dict)  # fingerprint, and per side the threads and cores used
    measured_at: str = ""
    error: str | None = None  # why there are no ratios

    @property
    def reference_cv(self) -> float:
        """How steady the machine was: the block-to-block CV of the reference's block medians (inf when no blocks
        were measured). Medians, not the objective's tail: a block's p95 also varies by sampling alone."""
        ratio = self.ratios.get("p50")
        return ratio.reference_cv if ratio is not None else float("inf")

    def to_dict(self) -> dict[str, Any]:
        """What the summary and MLflow keep (the blocks' latencies are logged as their own file)."""
        return {"reference": self.reference, "candidate": self.candidate, "pairs": self.pairs,
                "reference_cv": None if self.error or not self.ratios else self.reference_cv,
                "block_queries": self.block_queries, "batch_size": self.batch_size, "measured_at": self.measured_at,
                "error": self.error, "machine": self.machine,
                "ratios": {stat: r.to_dict() for stat, r in self.ratios.items()}}


def compare_variants(reference: Variant, candidate: Variant, role: str, hardware: HardwareSpec,
                     workload_spec: WorkloadSpec, workload: Workload, noise: NoiseSpec, out_dir: Path,
                     on_progress: ProgressFn | None = None) -> Comparison:
    """Measure ``candidate`` against ``reference`` in ``noise.pairs`` interleaved pairs of blocks."""
    batch_size = workload_spec.batch_sizes[0]
    result = Comparison(reference.name, candidate.name, role, pairs=noise.pairs, block_queries=noise.block_queries,
                        batch_size=batch_size, measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        machine={"fingerprint": fingerprint(hardware)})
    job = {"hardware": hardware.model_dump(), "scenario": workload_spec.scenario,
           "target_qps": workload_spec.target_qps, "sequence_length": workload_spec.sequence_length,
           "max_new_tokens": workload_spec.max_new_tokens, "warmup_s": workload_spec.measurement.warmup_s,
           "batch_size": batch_size, **served_requests(workload, workload_spec)}
    order = abba_order(noise.pairs)
    blocks: dict[str, list[list[float]]] = {"R": [], "C": []}
    report = on_progress or (lambda *_: None)
    try:
        report(f"paired vs {role}", 0, len(order))
        with WorkerSession(reference, job, out_dir / "reference") as ref, \
                WorkerSession(candidate, job, out_dir / "candidate") as cand:
            result.machine.update(reference=ref.wait_ready(), candidate=cand.wait_ready())
            for i, side in enumerate(order):
                session = ref if side == "R" else cand
                blocks[side].append(session.block(batch_size, noise.block_queries))
                report(f"paired vs {role}", i + 1, len(order))
    except (WorkerError, EnvironmentBuildError, OSError) as exc:
        result.error = f"paired comparison failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        return result
    result.blocks = {"reference": blocks["R"], "candidate": blocks["C"]}
    result.ratios = {stat: paired_ratio(blocks["R"], blocks["C"], stat, noise.confidence) for stat in STATS
                     if noise.block_queries >= min_block_queries(stat)}
    return result
