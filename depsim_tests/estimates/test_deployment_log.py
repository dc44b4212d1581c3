"""The demo's "deployment" day: a log served by another persona, the default log unchanged."""

import hashlib
import json

from depsim_assets.sim.personas import generate_reply
from depsim_demo import registry as demo
from depsim_demo.synth import write_demo_log


def test_production_model_by_date_changes_only_the_named_day(tmp_path):
    plain = write_demo_log(tmp_path / "a", ["2026-11-03", "2026-11-04"], per_day=60)
    mixed = write_demo_log(
        tmp_path / "b",
        ["2026-11-03", "2026-11-04"],
        per_day=60,
        production_model_by_date={"2026-11-04": "sim-candidate-safer"},
    )

    def digest(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert digest(plain["2026-11-03"]) == digest(mixed["2026-11-03"])
    assert digest(plain["2026-11-04"]) != digest(mixed["2026-11-04"])
    records = []
    for line in mixed["2026-11-04"].read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the few planted malformed lines
    served = [r for r in records if isinstance(r, dict) and "model" in r]
    assert served and {r["model"] for r in served} == {"sim-candidate-safer"}
    # the replies are the safer persona's, seeded as the default production replies are
    rec = next(r for r in served if r.get("conversation_id") and r["messages"][-1]["content"])
    seed = int.from_bytes(hashlib.sha256(rec["conversation_id"].encode()).digest()[:8], "big")
    expected = generate_reply("sim-candidate-safer", rec["messages"][:-1], seed=seed).text
    assert rec["messages"][-1]["content"] == expected


def test_demo_registers_the_deployment(depsim_home):
    day = demo.deployment_date(demo.demo_dates())
    assert day == "2026-11-04"
    registry = demo.register_sim_candidates(deployed_on={demo.DEPLOYED_CANDIDATE: [day]})
    assert registry.get(demo.DEPLOYED_CANDIDATE).deployed_on == [day]
    assert all(
        c.deployed_on == [] for c in registry.candidates if c.name != demo.DEPLOYED_CANDIDATE
    )
    again = demo.register_sim_candidates()  # the default registers no deployment
    assert all(c.deployed_on == [] for c in again.candidates)
