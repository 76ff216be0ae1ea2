"""ConnectorRegistry: built-ins, register, ``module:Class`` import paths, and real entry-point plug-ins."""
from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from osmosis_beam.config import parse_pipeline
from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.options import Option
from osmosis_beam.registry import (
    ENTRY_POINT_GROUPS,
    KINDS,
    ConnectorRegistry,
    default_registry,
)


class Dummy:
    """A dummy type.

    More text that describe() leaves out.
    """

    options = ()


def empty_registry() -> ConnectorRegistry:
    return ConnectorRegistry(builtins=False, entry_points=False)


def make_plugin(root: Path, entry_points: dict[str, list[str]], module_source: str) -> str:
    """A tiny installed distribution: a module plus ``<name>.dist-info`` with METADATA and entry_points.txt."""
    name = f"osmo_plugin_{uuid.uuid4().hex[:10]}"
    (root / f"{name}.py").write_text(textwrap.dedent(module_source), encoding="utf-8")
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines.extend(entry.format(module=name) for entry in entries)
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")
    return name


PLUGIN_SOURCE = """\
from osmosis_beam.core.options import Option
from osmosis_beam.core.models import TransformationStep

IMPORTED = True


class EchoConnector:
    '''Echo records back (a test plug-in).'''

    type_name = "echo"
    options = (Option("endpoint", required=True), Option("retries", "int", default=3))


class ShoutStep(TransformationStep):
    '''Upper-case every title.'''

    name = "shout"

    def process(self, records):
        return [{**r, "title": r["title"].upper()} for r in records]


class NullSink:
    '''Discard everything.'''

    options = ()
"""


# -- built-ins and lookups ------------------------------------------------------------------------------------------------
def test_builtins_are_registered_by_name():
    registry = ConnectorRegistry(entry_points=False)
    assert "rss" in registry.names("connector")
    assert {"jsonl"} <= set(registry.names("sink"))
    assert {"filter", "map", "select", "drop", "rename", "python"} <= set(registry.names("step"))
    assert registry.names("connector") == sorted(registry.names("connector"))
    from osmosis_beam.io.files.jsonl import JSONLSink
    from osmosis_beam.io.rss.source import RSSConnector
    from osmosis_beam.steps.expressions import FilterStep

    assert registry.connector("rss") is RSSConnector
    assert registry.sink("jsonl") is JSONLSink
    assert registry.step("filter") is FilterStep


def test_default_registry_is_one_per_process():
    assert default_registry() is default_registry()


def test_unknown_name_lists_the_known_ones_with_a_suggestion():
    registry = empty_registry()
    for name in ("web", "postgres", "rss", "mongodb"):
        registry.register("connector", name, Dummy)
    with pytest.raises(ConfigError) as info:
        registry.connector("postgress")
    assert str(info.value) == "unknown connector 'postgress' (did you mean 'postgres'?); known: mongodb, postgres, rss, web"
    with pytest.raises(ConfigError) as info:
        registry.connector("kafka")
    assert str(info.value) == "unknown connector 'kafka'; known: mongodb, postgres, rss, web"
    with pytest.raises(ConfigError) as info:
        registry.sink("jsonl")
    assert str(info.value) == "unknown sink 'jsonl'; known: none"


def test_register_a_class_and_look_it_up_per_kind():
    registry = empty_registry()
    registry.register("step", "dummy", Dummy)
    assert registry.step("dummy") is Dummy
    assert registry.names("step") == ["dummy"]
    assert registry.names("connector") == []
    with pytest.raises(ConfigError, match="unknown connector 'dummy'"):
        registry.connector("dummy")
    registry.register("step", "dummy", Option)  # registering again replaces
    assert registry.step("dummy") is Option


def test_register_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown kind 'source'; known: connector, step, sink"):
        empty_registry().register("source", "x", Dummy)


def test_a_registered_import_path_is_loaded_lazily_and_cached(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    name = make_plugin(tmp_path, {}, PLUGIN_SOURCE)
    registry = empty_registry()
    registry.register("connector", "echo", f"{name}:EchoConnector")
    assert name not in sys.modules  # registering does not import
    cls = registry.connector("echo")
    assert cls.__name__ == "EchoConnector" and sys.modules[name].IMPORTED
    assert registry.connector("echo") is cls


def test_a_type_may_be_named_by_import_path():
    registry = empty_registry()
    from osmosis_beam.io.rss.source import RSSConnector

    assert registry.connector("osmosis_beam.io.rss.source:RSSConnector") is RSSConnector
    # Dotted attributes reach nested objects.
    assert registry.step("osmosis_beam.config:Option.__init__") is Option.__init__
    # Looking a path up does not register it under that name.
    assert registry.names("connector") == []


def test_bad_import_paths_are_config_errors():
    registry = empty_registry()
    with pytest.raises(ConfigError) as info:
        registry.connector("no_such_module_xyz:Thing")
    assert str(info.value) == (
        "connector 'no_such_module_xyz:Thing' cannot be loaded: No module named 'no_such_module_xyz'; "
        "install the package that provides it"
    )
    with pytest.raises(ConfigError) as info:
        registry.sink("osmosis_beam.config:NoSuchSink")
    assert str(info.value) == "sink 'osmosis_beam.config:NoSuchSink': 'osmosis_beam.config:NoSuchSink' does not exist"
    registry.register("connector", "gone", "osmosis_beam.config:Vanished")
    with pytest.raises(ConfigError, match="connector 'gone': 'osmosis_beam.config:Vanished' does not exist"):
        registry.connector("gone")


def test_describe_gives_each_types_first_doc_line_or_why_it_is_unavailable():
    registry = empty_registry()
    registry.register("connector", "dummy", Dummy)
    registry.register("connector", "broken", "no_such_module_xyz:Thing")
    described = registry.describe()
    assert set(described) == {kind + "s" for kind in KINDS}
    assert described["connectors"][1] == {"name": "dummy", "description": "A dummy type."}
    assert described["connectors"][0]["name"] == "broken"
    assert described["connectors"][0]["description"].startswith("unavailable: connector 'broken' cannot be loaded")
    assert described["sinks"] == [] and described["steps"] == []


# -- entry-point plug-ins, installed for real ----------------------------------------------------------------------------
@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path, like a site-packages, for tiny distributions."""
    root = tmp_path / "site-packages"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


def test_entry_point_plugins_are_found_in_every_group(site):
    name = make_plugin(
        site,
        {
            ENTRY_POINT_GROUPS["connector"]: ["echo = {module}:EchoConnector"],
            ENTRY_POINT_GROUPS["step"]: ["shout = {module}:ShoutStep"],
            ENTRY_POINT_GROUPS["sink"]: ["null = {module}:NullSink"],
        },
        PLUGIN_SOURCE,
    )
    assert ENTRY_POINT_GROUPS["connector"] == "osmosis_beam.connectors"
    registry = ConnectorRegistry()
    assert "echo" in registry.names("connector") and "rss" in registry.names("connector")
    assert name not in sys.modules  # plug-ins are imported when used, not when found
    echo = registry.connector("echo")
    assert echo.__module__ == name and echo.type_name == "echo"
    assert registry.step("shout")().process([{"title": "hi"}]) == [{"title": "HI"}]
    assert registry.sink("null").__name__ == "NullSink"
    assert {"name": "echo", "description": "Echo records back (a test plug-in)."} in registry.describe()["connectors"]


def test_a_plugin_connector_is_usable_in_a_pipeline(site):
    make_plugin(site, {"osmosis_beam.connectors": ["echo = {module}:EchoConnector"]}, PLUGIN_SOURCE)
    registry = ConnectorRegistry()
    spec = parse_pipeline(
        {"id": "p", "source": {"type": "echo", "endpoint": "tcp://x", "retries": "5"}, "sink": {"type": "jsonl", "path": "/x"}},
        env={},
        registry=registry,
    )
    assert spec.source.options == {"endpoint": "tcp://x", "retries": 5}
    with pytest.raises(ConfigError) as info:
        parse_pipeline({"id": "p", "source": {"type": "echoo"}, "sink": {"type": "jsonl", "path": "/x"}}, env={}, registry=registry)
    assert info.value.problems[0].startswith("source.type: unknown connector 'echoo' (did you mean 'echo'?); known: ")
    with pytest.raises(ConfigError) as info:
        parse_pipeline({"id": "p", "source": {"type": "echo"}, "sink": {"type": "jsonl", "path": "/x"}}, env={}, registry=registry)
    assert info.value.problems == ["source.endpoint: required"]


def test_a_broken_plugin_fails_when_used_with_a_clear_error(site):
    make_plugin(site, {"osmosis_beam.connectors": ["ghost = osmo_missing_pkg_xyz.conn:Ghost"]}, "X = 1\n")
    registry = ConnectorRegistry()
    assert "ghost" in registry.names("connector")  # finding it imports nothing
    with pytest.raises(ConfigError) as info:
        registry.connector("ghost")
    assert "connector 'ghost' cannot be loaded" in str(info.value)
    assert "install the package that provides it" in str(info.value)


def test_a_plugin_cannot_replace_a_builtin(site):
    make_plugin(site, {"osmosis_beam.connectors": ["rss = {module}:EchoConnector"]}, PLUGIN_SOURCE)
    from osmosis_beam.io.rss.source import RSSConnector

    assert ConnectorRegistry().connector("rss") is RSSConnector


def test_entry_points_can_be_turned_off(site):
    make_plugin(site, {"osmosis_beam.connectors": ["echo = {module}:EchoConnector"]}, PLUGIN_SOURCE)
    assert "echo" in ConnectorRegistry().names("connector")
    assert "echo" not in ConnectorRegistry(entry_points=False).names("connector")
