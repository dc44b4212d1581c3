"""Shared fixtures: every test gets its own depsim home folder under tmp_path."""

import dagster as dg
import pytest


@pytest.fixture
def depsim_home(tmp_path, monkeypatch):
    """A fresh ``$DEPSIM_HOME`` (and Dagster home) for one test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DEPSIM_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.delenv("DEPSIM_WAREHOUSE", raising=False)
    return home


@pytest.fixture
def instance():
    """An in-memory Dagster instance (dynamic partitions included)."""
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst
