"""``.venv/bin/depsim ui`` exactly as the README says: no venv activated, Ctrl-C stops it.

The venv's ``bin`` is taken off PATH and a ``dagster`` that only fails is put first on it, so
the test fails if depsim runs any ``dagster`` but the venv's own. The webserver must answer
and load the code location; then the terminal's Ctrl-C (SIGINT to depsim's process group)
must end depsim with exit code 0, nothing alarming on stderr, and no process of the server
left behind. The second case starts depsim the way a script's background job starts: with
SIGINT ignored, which dagster dev would inherit and never stop on.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from depsim_assets import config

pytestmark = pytest.mark.e2e

HOST = "127.0.0.1"
START_S = 240  # dagster dev imports the code location in two processes: slow on 2 cores
STOP_S = 120
LOCATION_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"
# A job started with `&` in a non-interactive shell: SIGINT ignored, then exec.
IGNORE_SIGINT_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _processes() -> list[tuple[int, int, int, int, str]]:
    """``(pid, ppid, pgrp, session, state)`` of every process (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            state, ppid, pgrp, session = fields[0], *map(int, fields[1:4])
            out.append((int(entry.name), ppid, pgrp, session, state))
    return out


def _alive_in_session(session: int) -> list[int]:
    return [pid for pid, _, _, sid, state in _processes() if sid == session and state != "Z"]


def _children(pid: int) -> list[int]:
    return [p for p, ppid, _, _, state in _processes() if ppid == pid and state != "Z"]


def _ready(base: str) -> str | None:
    """None once the webserver answers and every code location is loaded; else why not."""
    try:
        with urllib.request.urlopen(f"{base}/server_info", timeout=5) as resp:
            json.load(resp)
        request = urllib.request.Request(
            f"{base}/graphql",
            data=json.dumps({"query": LOCATION_QUERY}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            entries = json.load(resp)["data"]["workspaceOrError"]["locationEntries"]
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError) as exc:
        return f"no answer ({exc})"
    if entries and all(e["loadStatus"] == "LOADED" for e in entries):
        return None
    return f"locations {entries}"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
@pytest.mark.parametrize("started", ["from a terminal", "as a background job"])
def test_depsim_ui_runs_the_venvs_dagster_and_stops_quietly_on_ctrl_c(
    depsim_home, tmp_path, started
):
    venv_bin = Path(sys.executable).parent
    depsim = venv_bin / "depsim"
    assert depsim.is_file(), "the console script is installed in the venv"
    # A `dagster` on PATH that must never run, and no venv bin dir on PATH.
    decoy = tmp_path / "decoy-bin"
    decoy.mkdir()
    ran = tmp_path / "decoy-ran"
    (decoy / "dagster").write_text(f"#!/bin/sh\ntouch {ran}\nexit 3\n")
    (decoy / "dagster").chmod(0o755)
    path = [str(decoy)] + [
        p
        for p in os.environ.get("PATH", "").split(os.pathsep)
        if p and Path(p).resolve() != venv_bin.resolve()
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "DEPSIM_WAREHOUSE")}
    env["PATH"] = os.pathsep.join(path)
    port = _free_port()
    cmd = [str(depsim), "ui", "--port", str(port)]
    if started == "as a background job":
        cmd = [sys.executable, "-c", IGNORE_SIGINT_EXEC, *cmd]
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        # Its own session, as a shell gives a job: SIGINT to its group is the terminal's Ctrl-C.
        proc = subprocess.Popen(
            cmd,
            cwd=config.PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    server_sessions: list[int] = []
    try:
        base, deadline, state = f"http://{HOST}:{port}", time.monotonic() + START_S, "not started"
        while (state := _ready(base)) is not None and time.monotonic() < deadline:
            assert proc.poll() is None, f"depsim ui exited {proc.returncode}: {err.read_text()}"
            time.sleep(0.5)
        assert state is None, f"not ready after {START_S}s ({state}): {err.read_text()[-3000:]}"
        server_sessions = _children(proc.pid)  # dagster dev leads its own session
        assert server_sessions, "dagster dev runs as a child of depsim"
        assert _alive_in_session(server_sessions[0]), "dagster dev's services are running"

        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=STOP_S)
    finally:
        for pgid in (proc.pid, *server_sessions):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)

    said, errors = out.read_text(), err.read_text()
    assert code == 0, errors[-3000:]
    assert not ran.exists(), "depsim ran a dagster from PATH"
    first = said.splitlines()[0]
    assert f"{venv_bin}/python" in first and " -m dagster dev -w " in first
    assert "Traceback" not in errors and "depsim: error" not in errors, errors[-3000:]
    assert "Traceback" not in said, said[-3000:]
    assert errors.strip() == "", errors[-3000:]  # not even Dagster's "use dg dev" warning
    # dagster dev took its own clean way out (its log goes to stdout)
    assert "KeyboardInterrupt received" in said and "Dagster services shut down." in said
    assert _alive_in_session(server_sessions[0]) == [], "a process of dagster dev outlived it"
