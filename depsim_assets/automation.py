"""Keeping Dagster in step with the outside world: the candidate registry sensor."""

import dagster as dg

from depsim_assets.partitions import CANDIDATE_DIM, PRODUCTION, candidate
from depsim_assets.resources import CandidateRegistry


def missing_partitions(registered: list[str], existing: list[str]) -> list[str]:
    """Candidate partitions to add: every registered name and ``production`` not yet known."""
    wanted = [PRODUCTION, *registered]
    known = set(existing)
    return [name for name in wanted if name not in known]


@dg.sensor(
    name="candidate_registry_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a candidate partition for every entry of candidates.yaml (and production).",
)
def candidate_registry_sensor(
    context: dg.SensorEvaluationContext, registry: CandidateRegistry
) -> dg.SensorResult | dg.SkipReason:
    """Add new candidates from the registry as dynamic partitions.

    An invalid registry raises, so the tick fails with the reason and changes nothing.
    """
    names = registry.load().names()
    existing = context.instance.get_dynamic_partitions(CANDIDATE_DIM)
    new = missing_partitions(names, existing)
    if not new:
        return dg.SkipReason(f"all {len(names)} registered candidates have partitions")
    context.log.info(f"adding candidate partitions: {new}")
    return dg.SensorResult(dynamic_partitions_requests=[candidate.build_add_request(new)])
