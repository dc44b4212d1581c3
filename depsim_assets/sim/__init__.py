"""The built-in simulator: an OpenAI-compatible server with known-rate personas (which call
tools when offered), a judge, a tool simulator and a realism discriminator."""

from depsim_assets.sim.agentic import TOOL_RAISED, TOOL_RATES, plan_turn, respond
from depsim_assets.sim.judge import JUDGE_MODEL, grade_category, grade_request
from depsim_assets.sim.personas import (
    LOWERED,
    PERSONA_MODELS,
    PERSONA_NOTES,
    PERSONA_RATES,
    RAISED,
    SimReply,
    generate_reply,
)
from depsim_assets.sim.server import SimServer, create_app, ensure_sim_server, serve

__all__ = [
    "JUDGE_MODEL",
    "LOWERED",
    "PERSONA_MODELS",
    "PERSONA_NOTES",
    "PERSONA_RATES",
    "RAISED",
    "SimReply",
    "SimServer",
    "TOOL_RAISED",
    "TOOL_RATES",
    "create_app",
    "ensure_sim_server",
    "generate_reply",
    "grade_category",
    "grade_request",
    "plan_turn",
    "respond",
    "serve",
]
