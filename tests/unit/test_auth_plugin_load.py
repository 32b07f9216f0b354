"""``auth_plugins = ["module:name"]``: what is loaded, and readable errors for what cannot be."""

from __future__ import annotations

from pathlib import Path

import pytest

from wrenmq.broker.auth.base import load_plugin
from wrenmq.errors import ConfigError

MODULE = '''
class Both:
    async def authenticate(self, client_id, username, password, peer): ...
    async def authorize(self, client_id, username, topic, access): ...

instance = Both()

def factory():
    return Both()

def broken_factory():
    raise RuntimeError("no database URL")

class Methods:
    auth_methods = {"TOKEN": object}

nothing = 42
'''


@pytest.fixture(autouse=True)
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "wplug.py").write_text(MODULE, encoding="utf-8")
    (tmp_path / "wbroken.py").write_text("raise ValueError('bad module')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))


@pytest.mark.parametrize("name", ["Both", "instance", "factory", "Methods"])
def test_loads(name: str) -> None:
    plugin = load_plugin(f"wplug:{name}")
    assert not isinstance(plugin, type)
    assert hasattr(plugin, "authorize") or hasattr(plugin, "auth_methods")


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("no_such_module_xyz:A", "cannot import 'no_such_module_xyz'"),
        ("wbroken:A", "bad module"),
        ("wplug:missing", "has no 'missing'"),
        ("wplug:broken_factory", "no database URL"),
        ("wplug:nothing", "expected an object with authenticate()"),
    ],
)
def test_errors_name_the_entry(spec: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_plugin(spec)
    assert spec in str(err.value) and why in str(err.value)
