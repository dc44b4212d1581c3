"""Small typed resources: each owns one outside thing and says so."""

from __future__ import annotations

import dagster as dg
import openai

from depsim_assets.endpoints import async_client, display_endpoint
from depsim_assets.registry import Registry, load_registry


class TrafficSource(dg.ConfigurableResource):
    """Owns the production log folder (JSONL by day) and the de-identification salt."""

    log_root: str
    deid_salt: str


class CandidateRegistry(dg.ConfigurableResource):
    """Owns ``candidates.yaml``: who the candidates are and how to reach them."""

    path: str

    def load(self) -> Registry:
        """Read and validate the registry file."""
        from pathlib import Path

        return load_registry(Path(self.path))


class JudgeEndpoint(dg.ConfigurableResource):
    """Owns the judge model: endpoint, model name, key env var, concurrency, flag threshold."""

    base_url: str = "sim"
    model: str = "sim-judge"
    api_key_env: str | None = None
    max_concurrency: int = 32
    timeout_s: float = 120.0
    max_retries: int = 4
    flag_threshold: int = 2

    def client(self) -> openai.AsyncOpenAI:
        """A fresh async client (one per run: clients bind to the event loop that uses them)."""
        return async_client(
            self.base_url,
            api_key_env=self.api_key_env,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
        )

    def endpoint_label(self) -> str:
        """The endpoint as stored on grade rows (no credentials)."""
        return display_endpoint(self.base_url)
