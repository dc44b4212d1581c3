"""The throwaway servers of depsim_tests/services.py: up, usable, and gone after stop()."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import psycopg2
import pytest
import redis

from depsim_tests import services


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_postgres_serves_a_database_and_stop_removes_it(tmp_path):
    server = services.start_postgres(tmp_path)
    try:
        with psycopg2.connect(server.url) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
            cur.execute("SELECT current_database(), current_user, (SELECT x FROM t)")
            assert cur.fetchone() == ("depsim", "depsim", 42)
        conn.close()
    finally:
        server.stop()
    assert server.process.poll() is not None
    assert not _port_open(server.port)
    assert not server.data_dir.exists()


@pytest.fixture
def public_folder():
    """A folder every user can traverse (pytest's tmp_path is under a private one, which the
    postgres system user cannot enter when the tests run as root)."""
    folder = Path(tempfile.mkdtemp(prefix="depsim-test-pg-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_postgres_kept_data_survives_a_restart(public_folder):
    folder = public_folder
    first = services.start_postgres(folder, keep=True)
    try:
        with psycopg2.connect(first.url) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)")
        conn.close()
    finally:
        first.stop()
    second = services.start_postgres(folder, keep=True)
    try:
        with psycopg2.connect(second.url) as conn, conn.cursor() as cur:
            cur.execute("SELECT x FROM kept")
            assert cur.fetchone() == (7,)
        conn.close()
    finally:
        second.stop()
    assert second.data_dir.exists()


def test_redis_answers_and_stops(tmp_path):
    server = services.start_redis(tmp_path)
    try:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
    finally:
        server.stop()
    assert server.process.poll() is not None
    assert not _port_open(server.port)


def test_missing_binaries_are_one_line_each(tmp_path, monkeypatch):
    monkeypatch.setenv(services.PG_BIN_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(services.ServiceError, match="initdb and postgres were not found"):
        services.start_postgres(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(services.ServiceError, match="redis-server was not found on PATH"):
        services.start_redis(tmp_path)
