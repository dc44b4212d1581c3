"""``depsim ui`` (the Dagster UI on this home's instance) and ``depsim sim serve``.

``depsim ui`` runs ``dagster dev`` with the Python that runs depsim (``sys.executable -m
dagster``), so ``.venv/bin/depsim ui`` works without activating the venv and never picks up
another ``dagster`` from PATH. The server gets its own session and process group; Ctrl-C (or
SIGTERM, or the terminal closing) reaches depsim, which asks ``dagster dev`` to shut down
(SIGINT, its own clean path), waits, and sweeps whatever of its process group is left.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from depsim_assets import config
from depsim_assets.cli.instance import prepare_dagster_home

# dagster dev gives each of its services 60 s to stop; past that, and for the stragglers of
# its process group once it has exited, depsim kills what is left.
STOP_GRACE_S = 90.0
SWEEP_GRACE_S = 10.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SUPERSEDED = "Function `dev_command` is superseded"  # a warning of dagster dev, not for users


def cmd_ui(args: argparse.Namespace) -> int:
    """Start ``dagster dev`` on this home folder's instance; Ctrl-C stops it (exit 0)."""
    home = prepare_dagster_home()
    # The code location runs from the project folder: give it this home by its absolute path,
    # so it reads the same warehouse, registry and partitions.yaml as the command line.
    env = {**os.environ, "DAGSTER_HOME": str(home), "DEPSIM_HOME": str(config.depsim_home())}
    # depsim chose the command, so Dagster's advice to type another one is not for the user.
    quiet = f"ignore:{SUPERSEDED}"
    env["PYTHONWARNINGS"] = ",".join(w for w in (env.get("PYTHONWARNINGS"), quiet) if w)
    workspace = config.PROJECT_ROOT / "workspace.yaml"
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(workspace)]
    cmd += ["-h", args.host, "-p", str(args.port)]
    print(f"DAGSTER_HOME={shlex.quote(str(home))} {shlex.join(cmd)}", flush=True)
    return run_until_stopped(cmd, env=env, cwd=config.PROJECT_ROOT)


def run_until_stopped(cmd: Sequence[str], *, env: dict[str, str], cwd: Path) -> int:
    """Run ``cmd`` as a server in its own session until it exits or depsim is told to stop.

    Returns the server's exit code, or 0 when the stop came from the user.
    """
    child: subprocess.Popen[bytes] | None = None
    stop = {"asked": False, "at": 0.0}

    def on_signal(signum: int, _frame: object) -> None:
        if stop["asked"] and child is not None:
            _kill_group(child.pid)  # asked twice: the user does not want to wait
            return
        stop.update(asked=True, at=time.monotonic())
        if child is not None:
            _interrupt(child.pid)

    # Installed before the server starts: a handled signal is reset to its default in the
    # exec'd child, whereas an ignored one (a job started in the background of a script
    # inherits SIGINT ignored) would stay ignored, and dagster dev would never stop on it.
    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    code = 0
    try:
        child = subprocess.Popen(
            list(cmd), env=env, cwd=cwd, stdin=subprocess.DEVNULL, start_new_session=True
        )
        if stop["asked"]:  # the signal came while the server was being started
            _interrupt(child.pid)
        while True:
            try:
                code = child.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if stop["asked"] and time.monotonic() - stop["at"] > STOP_GRACE_S:
                    _kill_group(child.pid)
        _sweep_group(child.pid)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stop["asked"] else code


def _interrupt(pid: int) -> None:
    # The leader only: dagster dev stops its webserver and daemon through their shutdown
    # pipes; a SIGINT to each of them as well would interrupt that shutdown half-way.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _sweep_group(pgid: int) -> None:
    """Wait a little for what is left of the server's process group, then kill it."""
    deadline = time.monotonic() + SWEEP_GRACE_S
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if group_members(pgid):
        _kill_group(pgid)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: the kernel says whether the group still exists
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # After the parenthesised command name: state, ppid, pgrp, ...
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def cmd_sim_serve(args: argparse.Namespace) -> int:
    """Serve the simulator until interrupted."""
    from depsim_assets.sim import serve
    from depsim_assets.sim.faults import FaultPlan

    faults = FaultPlan.parse(args.faults) if args.faults else None
    print(f"depsim simulator on http://{args.host}:{args.port}/v1 (Ctrl-C to stop)", flush=True)
    serve(args.host, args.port, faults=faults)
    return 0


def add_sim(sub: argparse._SubParsersAction) -> None:
    """``depsim sim serve``."""
    from depsim_assets.sim.faults import SPEC_HELP

    p = sub.add_parser("sim", help="the built-in OpenAI-compatible simulator")
    ssub = p.add_subparsers(dest="action", required=True)
    s = ssub.add_parser("serve", help="serve the simulator over HTTP")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--faults", metavar="SPEC", help="inject faults: " + SPEC_HELP)
    s.set_defaults(func=cmd_sim_serve)


def add_ui(sub: argparse._SubParsersAction) -> None:
    """``depsim ui``."""
    p = sub.add_parser("ui", help="open the Dagster UI on this home folder")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)
