"""DataSourceManager: sources persisted in the state store with secrets redacted and ${ENV} references kept."""
from __future__ import annotations

import textwrap

import pytest

from osmosis_beam.config import load_pipeline
from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.options import Option
from osmosis_beam.registry import ConnectorRegistry
from osmosis_beam.state.sources import DataSourceManager, redact_config
from osmosis_beam.state.sqlite import SQLiteStateStore

SECRETS = ("hunter2", "tok-123456", "Bearer abc.def.ghi", "cookie-value-42", "pin-9931", "dflt-secret")


class Warehouse:
    """A connector whose options include declared secrets (test double, only validated here)."""

    type_name = "warehouse"
    options = (
        Option("dsn", required=True),
        Option("user"),
        Option("password", secret=True),
        Option("passphrase", secret=True),
        Option("key_material", secret=True),  # secret by declaration, not by its name
        Option("api_token"),
        Option("headers", "dict", default={}),
        Option("port", "int", default=5432),
        Option("tables", "list", default=[]),
    )


@pytest.fixture
def registry():
    from osmosis_beam.io.files.jsonl import JSONLSink

    reg = ConnectorRegistry(builtins=False, entry_points=False)
    reg.register("connector", "warehouse", Warehouse)
    reg.register("sink", "jsonl", JSONLSink)
    from osmosis_beam.io.rss.source import RSSConnector

    reg.register("connector", "rss", RSSConnector)
    return reg


@pytest.fixture
def store(tmp_path):
    return SQLiteStateStore(tmp_path / "home" / "state.db")


def write_pipeline(folder, text):
    path = folder / "pipeline.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


PIPELINE = """\
id: orders
source:
  type: warehouse
  dsn: postgresql://app:hunter2@db:5432/prod
  user: app
  password: ${DB_PASSWORD}
  passphrase: ${PASSPHRASE:-dflt-secret}
  key_material: pin-9931
  api_token: tok-123456
  headers:
    Authorization: Bearer abc.def.ghi
    Cookie: cookie-value-42
    X-Trace: "on"
  port: ${DB_PORT}
  tables: [orders, customers]
sink:
  type: jsonl
  path: ./out
"""


def home_bytes(store) -> bytes:
    """Everything SQLite wrote for the home (the db and its WAL)."""
    return b"".join(p.read_bytes() for p in store.path.parent.iterdir() if p.is_file())


def test_save_redacts_secrets_and_keeps_env_references(tmp_path, store, registry):
    spec = load_pipeline(
        write_pipeline(tmp_path, PIPELINE), registry=registry, env={"DB_PASSWORD": "hunter2", "DB_PORT": "6432"}
    )
    record = DataSourceManager(store, registry).save(spec)

    assert record.id == "orders" and record.type == "warehouse"
    assert record.pipeline_path == str((tmp_path / "pipeline.yaml").resolve())
    assert record.config == {
        "type": "warehouse",
        "dsn": "postgresql://app:***@db:5432/prod",
        "user": "app",
        "password": "${DB_PASSWORD}",  # a reference names the secret without holding it
        "passphrase": "***",  # a reference with a literal default holds one
        "key_material": "***",
        "api_token": "***",
        "headers": {"Authorization": "***", "Cookie": "***", "X-Trace": "on"},
        "port": "${DB_PORT}",
        "tables": ["orders", "customers"],
    }
    assert record.created_at.utcoffset().total_seconds() == 0
    # Not in the record, and not anywhere on disk either.
    on_disk = home_bytes(store)
    for secret in SECRETS:
        assert secret.encode() not in on_disk, secret
    assert b"${DB_PASSWORD}" in on_disk


def test_list_get_show_and_remove(tmp_path, store, registry):
    manager = DataSourceManager(store, registry)
    assert manager.list() == []
    for pid in ("zeta", "alpha"):
        (tmp_path / pid).mkdir()
        path = write_pipeline(
            tmp_path / pid,
            f"id: {pid}\nsource: {{type: rss, url: 'https://u:pw1234@feeds.example/{pid}.xml'}}\nsink: {{type: jsonl, path: out}}\n",
        )
        manager.save(load_pipeline(path, registry=registry, env={}))
    assert [s.id for s in manager.list()] == ["alpha", "zeta"]
    assert manager.get("zeta").config == {"type": "rss", "url": "https://u:***@feeds.example/zeta.xml"}

    with pytest.raises(ConfigError) as info:
        manager.get("beta")
    assert str(info.value) == "unknown source 'beta'; known: alpha, zeta"

    manager.remove("alpha")
    assert [s.id for s in manager.list()] == ["zeta"]
    with pytest.raises(ConfigError, match="unknown source 'alpha'; known: zeta"):
        manager.remove("alpha")


def test_saving_again_updates_the_source(tmp_path, store, registry):
    manager = DataSourceManager(store, registry)
    path = write_pipeline(tmp_path, "id: news\nsource: {type: rss, url: 'http://h/a.xml'}\nsink: {type: jsonl, path: out}\n")
    first = manager.save(load_pipeline(path, registry=registry, env={}))
    path.write_text("id: news\nsource: {type: rss, url: 'http://h/b.xml'}\nsink: {type: jsonl, path: out}\n")
    second = manager.save(load_pipeline(path, registry=registry, env={}))
    assert len(manager.list()) == 1
    assert second.config["url"] == "http://h/b.xml"
    assert second.created_at == first.created_at and second.updated_at >= first.updated_at


def test_unknown_connector_type_still_redacts_by_name():
    # A source saved while its plug-in is not installed: names that look secret are still hidden.
    assert redact_config({"token": "abc", "nested": {"client_secret": "s", "url": "http://u:p@h/"}, "n": 5}) == {
        "token": "***",
        "nested": {"client_secret": "***", "url": "http://u:***@h/"},
        "n": 5,
    }


def test_redact_config_non_text_secrets_and_lists():
    assert redact_config({"password": 123456, "pin": 42}, {"pin"}) == {"password": "***", "pin": "***"}
    assert redact_config({"api_keys": ["k1", "${K2}"]}) == {"api_keys": ["***", "${K2}"]}
    assert redact_config({"password": "${PW:-}"}) == {"password": "***"}
    original = {"headers": {"Authorization": "Bearer x"}}
    redact_config(original)
    assert original == {"headers": {"Authorization": "Bearer x"}}  # the input is not modified
