"""The import architecture (``.importlinter``, docs/architecture.md) holds, and has teeth.

- the contract is kept: stages never import one another or the top, shared modules never
  import a stage or the top, the product never imports the demo or the tests;
- every module of ``depsim_assets`` is placed in it (a new module cannot slip past it);
- a deliberately broken copy of the package is caught, with the offending import named.

import-linter reads the source (it imports nothing), so this is fast.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / ".importlinter"
PACKAGE = ROOT / "depsim_assets"


def _lint_imports() -> str:
    found = Path(sys.executable).with_name("lint-imports")
    if found.exists():
        return str(found)
    which = shutil.which("lint-imports")
    if which is None:
        pytest.fail("import-linter is not installed: .venv/bin/pip install import-linter")
    return which


def _run(cwd: Path, *, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        # The copy first, so its packages are analysed rather than the installed ones.
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [_lint_imports(), "--no-cache", "--no-logo", str(cwd / ".importlinter")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _broken(output: str) -> str:
    """The part of import-linter's report that names each broken contract and import chain."""
    _, marker, rest = output.partition("Broken contracts")
    return (marker + rest).strip() if marker else output.strip()


def _contracts() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(CONTRACT)
    return parser


def _modules(parser: configparser.ConfigParser, contract: str, field: str) -> set[str]:
    return set(parser[f"importlinter:contract:{contract}"][field].split())


def test_the_import_contract_is_kept() -> None:
    result = _run(ROOT)
    if result.returncode != 0:
        pytest.fail(
            "the import architecture is broken (.importlinter, docs/architecture.md):\n"
            + _broken(result.stdout + result.stderr),
            pytrace=False,
        )
    contracts = [s for s in _contracts().sections() if s.startswith("importlinter:contract:")]
    assert f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout, result.stdout


def test_every_module_of_the_package_is_placed() -> None:
    """Each module and subpackage of depsim_assets is a stage, a shared module or the top."""
    parser = _contracts()
    stages = _modules(parser, "stages-independent", "modules")
    top = _modules(parser, "stages-below-top", "forbidden_modules")
    shared = _modules(parser, "shared-below-stages", "source_modules")
    assert _modules(parser, "stages-below-top", "source_modules") == stages
    assert _modules(parser, "shared-below-stages", "forbidden_modules") == stages | top
    assert not (stages & top or stages & shared or top & shared)
    present = {
        f"depsim_assets.{p.stem if p.is_file() else p.name}"
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").exists()
    }
    unplaced = sorted(present - stages - top - shared)
    assert not unplaced, (
        f"{unplaced}: not in .importlinter; name each a stage, a shared module or the top "
        "(docs/architecture.md)"
    )


def _copy(tmp_path: Path) -> Path:
    shutil.copy(CONTRACT, tmp_path / ".importlinter")
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(PACKAGE, tmp_path / "depsim_assets", ignore=skip)
    for name in ("depsim_demo", "depsim_tests"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "line", "chain"),
    [
        # a later stage reaching back into an earlier one's internals
        (
            "estimates/guard.py",
            "from depsim_assets.traffic import logs",
            "depsim_assets.estimates.guard -> depsim_assets.traffic.logs",
        ),
        # a shared module reaching up to the top
        (
            "warehouse.py",
            "from depsim_assets import runs",
            "depsim_assets.warehouse -> depsim_assets.runs",
        ),
        # the product importing its demo data
        ("config.py", "import depsim_demo", "depsim_assets.config -> depsim_demo"),
    ],
)
def test_a_violation_is_caught_and_named(
    tmp_path: Path, module: str, line: str, chain: str
) -> None:
    root = _copy(tmp_path)
    target = root / "depsim_assets" / module
    target.write_text(target.read_text() + f"\n{line}  # injected by the test\n")
    result = _run(root, pythonpath=root)
    assert result.returncode != 0, result.stdout
    assert chain in _broken(result.stdout), result.stdout
