"""Shared fixtures: every test gets its own depsim home folder under tmp_path."""

import dagster as dg
import pytest

# Sampling refuses to run without a secret salt (config.check_deid_salt); the tests use this
# one, never the demo's, so a test that samples exercises the real rule. Tests of the refusal
# delete it with monkeypatch.
TEST_SALT = "depsim-test-salt-0123456789abcdef"


@pytest.fixture(autouse=True, scope="session")
def deid_salt():
    """``DEPSIM_DEID_SALT`` for the whole session (subprocesses inherit it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEPSIM_DEID_SALT", TEST_SALT)
        yield TEST_SALT


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
