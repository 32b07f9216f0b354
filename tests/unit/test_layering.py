"""The sans-IO layers never import IO or clock modules; packages import only from layers below."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "wrenmq"
FORBIDDEN = {"asyncio", "socket", "ssl", "selectors", "time"}
# Layer order from STYLE.md: a package may import only from packages to its right.
ORDER = [
    "cli",
    "bridge",
    "cluster",
    "gateways",
    "client",
    "broker",
    "transport",
    "protocol",
    "codec",
]
SIBLINGS = [{"bridge", "cluster", "gateways"}, {"client", "broker"}]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def sans_io_files() -> list[Path]:
    return sorted((SRC / "codec").rglob("*.py")) + sorted((SRC / "protocol").rglob("*.py"))


@pytest.mark.parametrize("path", sans_io_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_sans_io_layers_import_no_io(path: Path) -> None:
    bad = {m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN}
    assert not bad, f"{path} imports {sorted(bad)}"


def test_forbidden_import_is_detected(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import asyncio\nfrom time import monotonic\n", encoding="utf-8")
    assert {"asyncio", "time"} <= imported_modules(sample)


def test_packages_import_only_lower_layers() -> None:
    problems = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).parts
        if len(rel) < 2 or rel[0] not in ORDER:
            continue
        own = rel[0]
        for mod in imported_modules(path):
            parts = mod.split(".")
            if parts[0] != "wrenmq" or len(parts) < 2 or parts[1] not in ORDER:
                continue
            other = parts[1]
            if other == own:
                continue
            if ORDER.index(other) <= ORDER.index(own) or any(
                {own, other} <= group for group in SIBLINGS
            ):
                problems.append(f"{path.relative_to(SRC)} imports {mod}")
    assert not problems, "\n".join(problems)
