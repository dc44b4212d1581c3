"""The registry sensor adds candidate partitions, and fails its tick on a bad registry."""

import dagster as dg
import pytest

from depsim_assets.automation import candidate_registry_sensor, missing_partitions
from depsim_assets.registry import RegistryError
from depsim_assets.resources import CandidateRegistry


def test_missing_partitions_adds_production_and_new_names_once():
    assert missing_partitions(["a", "b"], []) == ["production", "a", "b"]
    assert missing_partitions(["a", "b"], ["production", "a"]) == ["b"]


def test_sensor_adds_new_candidates(tmp_path, instance):
    path = tmp_path / "candidates.yaml"
    path.write_text("candidates:\n  - {name: cand-1, base_url: sim, model: sim-production}\n")
    registry = CandidateRegistry(path=str(path))
    ctx = dg.build_sensor_context(instance=instance, resources={"registry": registry})
    result = candidate_registry_sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    request = result.dynamic_partitions_requests[0]
    assert request.partitions_def_name == "candidate"
    assert list(request.partition_keys) == ["production", "cand-1"]
    instance.add_dynamic_partitions("candidate", ["production", "cand-1"])
    again = candidate_registry_sensor(
        dg.build_sensor_context(instance=instance, resources={"registry": registry})
    )
    assert isinstance(again, dg.SkipReason)


def test_bad_registry_fails_the_tick(tmp_path, instance):
    path = tmp_path / "candidates.yaml"
    path.write_text("candidates:\n  - {name: 'bad name', base_url: sim, model: m}\n")
    ctx = dg.build_sensor_context(
        instance=instance, resources={"registry": CandidateRegistry(path=str(path))}
    )
    with pytest.raises(RegistryError, match="not a valid candidate name"):
        candidate_registry_sensor(ctx)
    assert instance.get_dynamic_partitions("candidate") == []
