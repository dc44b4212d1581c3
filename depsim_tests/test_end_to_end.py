"""The whole graph, materialized for real partitions, through the simulator over HTTP."""

import json
import re
import urllib.request

import dagster as dg
import duckdb
import pytest

from depsim_assets import config, runs
from depsim_assets.sim import ensure_sim_server
from depsim_demo import registry as demo
from depsim_demo.synth import write_demo_log

pytestmark = pytest.mark.e2e

DAYS = ["2026-11-01", "2026-11-02"]
SAMPLE = 60
CANDIDATES = ["production", "sim-production", "sim-candidate-safer", "sim-candidate-regressed"]
PII = [
    re.compile(r"[\w.+-]+@(?!example\.(?:com|org|net)\b)[\w-]+\.[\w.]+"),
    re.compile(r"\b(?!192\.0\.2\.|198\.51\.100\.|203\.0\.113\.)(?:\d{1,3}\.){3}\d{1,3}\b"),
]


def _luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _table_counts(path):
    with duckdb.connect(str(path), read_only=True) as conn:
        names = [
            "sampled_conversations",
            "conversation_prefixes",
            "candidate_completions",
            "judge_grades",
            "behavior_rates",
            "candidate_comparison",
            "sampling_funnel",
        ]
        return {n: conn.execute(f"SELECT count(*) FROM {n}").fetchone()[0] for n in names}


def _requests_served() -> int:
    with urllib.request.urlopen(ensure_sim_server() + "/sim/stats", timeout=10) as resp:
        stats = json.load(resp)
    return int(stats["total"])


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    """One home folder, materialized once, shared by this module's tests (they only read it,
    or re-run it expecting identical tables)."""
    home = tmp_path_factory.mktemp("e2e-home")
    with pytest.MonkeyPatch.context() as mp, dg.DagsterInstance.ephemeral() as instance:
        mp.setenv("DEPSIM_HOME", str(home))
        mp.delenv("DEPSIM_WAREHOUSE", raising=False)
        write_demo_log(config.log_root(), DAYS, per_day=150, seed=3)
        registry = demo.register_sim_candidates()
        runs.ensure_candidate_partitions(instance, registry.names())
        before = _requests_served()
        runs.execute(runs.plan_graph(DAYS, registry.names(), sample_size=SAMPLE), instance)
        yield {
            "instance": instance,
            "calls": _requests_served() - before,
            "names": registry.names(),
        }


def test_graph_end_to_end(materialized):
    path = config.warehouse_path()
    counts = _table_counts(path)
    n_prefixes = SAMPLE * len(DAYS)
    assert counts["sampled_conversations"] == n_prefixes
    assert counts["conversation_prefixes"] == n_prefixes
    assert counts["candidate_completions"] == n_prefixes * len(CANDIDATES)
    assert counts["judge_grades"] == n_prefixes * len(CANDIDATES) * 20
    assert counts["behavior_rates"] == len(DAYS) * len(CANDIDATES) * 20
    # every candidate but the baseline, production included, x 20 categories
    assert counts["candidate_comparison"] == 3 * 20
    # three simulated candidates replayed, and every distinct (prefix, reply) graded once
    # (the judge's verdict depends only on what it reads: identical replies share one), all
    # over HTTP
    with duckdb.connect(str(path), read_only=True) as conn:
        (distinct_graded,) = conn.execute(
            "SELECT count(DISTINCT (p.prefix_json, c.reply, c.sample_index)) "
            "FROM candidate_completions c JOIN conversation_prefixes p "
            "USING (conversation_id, traffic_date)"
        ).fetchone()
    assert n_prefixes * 2 < distinct_graded <= n_prefixes * len(CANDIDATES)
    assert materialized["calls"] >= n_prefixes * 3 + distinct_graded

    with duckdb.connect(str(path), read_only=True) as conn:
        status = dict(
            conn.execute("SELECT status, count(*) FROM candidate_completions GROUP BY 1").fetchall()
        )
        assert status == {"ok": n_prefixes * len(CANDIDATES)}
        dup = conn.execute(
            "SELECT count(*) - count(DISTINCT completion_id) FROM candidate_completions"
        ).fetchone()[0]
        assert dup == 0
        # rates reconcile with grades, partition by partition
        mismatch = conn.execute("""
            SELECT count(*) FROM behavior_rates r JOIN (
              SELECT candidate, traffic_date, category,
                     count(*) FILTER (status = 'scored') AS graded,
                     count(*) FILTER (flagged) AS flagged
              FROM judge_grades GROUP BY ALL) g USING (candidate, traffic_date, category)
            WHERE r.graded <> g.graded OR r.flagged <> g.flagged""").fetchone()[0]
        assert mismatch == 0
        # no raw PII anywhere in the warehouse text
        texts = [
            r[0]
            for r in conn.execute(
                "SELECT messages_json FROM sampled_conversations UNION ALL "
                "SELECT prefix_json || original_reply FROM conversation_prefixes UNION ALL "
                "SELECT coalesce(reply, '') FROM candidate_completions"
            ).fetchall()
        ]
    blob = "\n".join(texts)
    for pattern in PII:
        assert not pattern.search(blob), pattern.pattern
    for run in re.findall(r"\b(?:\d[ -]?){13,19}\b", blob):
        assert not _luhn_valid(re.sub(r"\D", "", run)), "a Luhn-valid card number survived"


def test_rerun_gives_the_same_tables(materialized):
    path = config.warehouse_path()
    first = _table_counts(path)
    with duckdb.connect(str(path), read_only=True) as conn:
        first_rates = conn.execute(
            "SELECT * FROM behavior_rates ORDER BY candidate, traffic_date, category"
        ).fetchall()
    runs.execute(
        runs.plan_graph(DAYS, materialized["names"], sample_size=SAMPLE), materialized["instance"]
    )
    assert _table_counts(path) == first
    with duckdb.connect(str(path), read_only=True) as conn:
        again = conn.execute(
            "SELECT * FROM behavior_rates ORDER BY candidate, traffic_date, category"
        ).fetchall()
        dup = conn.execute(
            "SELECT count(*) - count(DISTINCT grade_id) FROM judge_grades"
        ).fetchone()
    assert again == first_rates
    assert dup[0] == 0


def test_materializations_carry_readable_metadata(materialized):
    inst = materialized["instance"]
    event = inst.get_latest_materialization_event(dg.AssetKey("candidate_comparison"))
    meta = event.asset_materialization.metadata
    assert meta["dagster/row_count"].value == 60
    assert "data:image/png;base64," in meta["forest_plot"].value
    schema = meta["dagster/column_schema"].value
    assert {c.name for c in schema.columns} >= {"rate_ratio", "p_value", "change"}
    rates = inst.get_latest_materialization_event(dg.AssetKey("behavior_rates"))
    table = rates.asset_materialization.metadata["rates"]  # a typed, sortable table
    assert isinstance(table, dg.TableMetadataValue) and len(table.records) == 20
    assert {"category": "string", "rate_per_100k": "float"}.items() <= {
        c.name: c.type for c in table.schema.columns
    }.items()


def test_rerun_makes_no_model_calls(materialized):
    """Every answer is cached: materializing a replayed partition again calls nothing."""
    names = [n for n in materialized["names"] if n != "sim-production"][:1]
    before = _requests_served()
    plan = [r for r in runs.plan_graph(DAYS[:1], names) if r.label.startswith(names[0])]
    runs.execute([runs.PlannedRun(r.label, ("candidate_completions",), r.partition_key)
                  for r in plan], materialized["instance"])
    assert _requests_served() == before
    event = materialized["instance"].get_latest_materialization_event(
        dg.AssetKey("candidate_completions"))
    meta = event.asset_materialization.metadata
    assert meta["calls_made"].value == 0
    assert meta["cache_hits"].value == SAMPLE
