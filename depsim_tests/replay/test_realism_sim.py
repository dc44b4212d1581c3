"""Acceptance (issue #14): turning the sim tool simulator's realism down lowers the share of
simulated results the discriminator judges real, and ``tool_realism`` reports it with an
interval. Real Dagster runs on the agentic synthetic day, the built-in simulator over HTTP."""

from __future__ import annotations

import dagster as dg
import pytest

from depsim_assets import config
from depsim_assets.definitions import ASSETS, build_resources
from depsim_assets.resources import RealismDiscriminator, ToolSimulator
from depsim_assets.toolsim import SIM_DISCRIMINATOR, SIM_TOOL_SIMULATOR
from depsim_assets.warehouse import TOOL_REALISM, read_partition
from depsim_demo.synth import write_agentic_day

DAY = "2026-06-10"
CONVERSATIONS = 160
PAIRS = 120


def _run(instance, selection, resources, run_config=None):
    result = dg.materialize(ASSETS, selection=selection, partition_key=DAY, instance=instance,
                            resources=resources, run_config=run_config)
    assert result.success
    return result


@pytest.mark.e2e
def test_lower_realism_is_judged_real_less_often(depsim_home, instance):
    write_agentic_day(config.log_root(), DAY, n=CONVERSATIONS)
    resources = build_resources()
    traffic = _run(instance, ["sampled_conversations", "conversation_prefixes", "tool_examples"],
                   resources,
                   {"ops": {"sampled_conversations": {"config": {"sample_size": CONVERSATIONS}}}})
    examples = traffic.asset_materializations_for_node("tool_examples")[0].metadata
    # every conversation of the agentic day declares tools and calls at least one
    assert examples["conversations_with_calls"].value == CONVERSATIONS
    assert examples["calls_with_schema"].value == examples["dagster/row_count"].value
    assert examples["tools"].value >= 3 and examples["per_tool"].value.records
    shares = {}
    for realism in ("", "@realism0.1"):
        resources["tool_simulator"] = ToolSimulator(model=SIM_TOOL_SIMULATOR + realism)
        resources["realism_discriminator"] = RealismDiscriminator(model=SIM_DISCRIMINATOR)
        result = _run(instance, ["tool_realism"], resources,
                      {"ops": {"tool_realism": {"config": {"pairs": PAIRS, "seed": 5}}}})
        meta = result.asset_materializations_for_node("tool_realism")[0].metadata
        with resources["warehouse"].get_connection() as conn:
            table = read_partition(conn, TOOL_REALISM, {"traffic_date": DAY})
        overall = table.set_index("tool_name").loc["overall"]
        # the metadata leads with the overall share and its interval, as the table holds them
        assert list(meta)[:3] == ["judged_real_share", "share_low", "share_high"]
        assert meta["judged_real_share"].value == pytest.approx(overall["judged_real_share"],
                                                                rel=1e-3)
        assert overall["pairs"] == PAIRS and overall["unscored"] == 0
        assert overall["share_low"] < overall["judged_real_share"] < overall["share_high"]
        assert len(table) > 2  # per tool rows too
        shares[realism or "default"] = overall
        print(f"realism {realism or 'default (0.9)'}: judged real "
              f"{overall['judged_real']}/{overall['pairs'] - overall['unscored']} = "
              f"{overall['judged_real_share']:.3f} "
              f"[{overall['share_low']:.3f}, {overall['share_high']:.3f}]")
    high, low = shares["default"], shares["@realism0.1"]
    # Published by the sim (tool_sim.py): about 0.45 at 0.9 and 0.09 at 0.1. The intervals
    # do not overlap: the drop is measured, not noise.
    assert low["share_high"] < high["share_low"]
    assert 0.3 < high["judged_real_share"] < 0.6 and low["judged_real_share"] < 0.2
