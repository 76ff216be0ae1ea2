"""YAML alias bombs ("billion laughs") must not hang ``validate``, ``run`` or ``launch``.

Nine levels of nine aliases each expand to ~10^9 strings when anything walks the document (the
environment interpolation does); before the fix ``validate`` grew to 1.2 GB in a minute. Each command
must refuse the file at once with an error naming it, while files with a few honest aliases
(``<<: *defaults``) keep working.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from osmosis_beam.config import MAX_YAML_NODES, load_pipeline
from osmosis_beam.core.errors import ConfigError


def _laughs(levels: int = 9) -> str:
    lines = ["id: bomb", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for n in range(1, levels):
        refs = ", ".join([f"*a{n - 1}"] * 9)
        lines.append(f"a{n}: &a{n} [{refs}]")
    lines += ["source:", "  type: rss", "  url: http://127.0.0.1:9/feed.xml", f"  tags: *a{levels - 1}",
              "sink:", "  type: jsonl", "  path: out"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def bomb(tmp_path) -> Path:
    path = tmp_path / "bomb.yaml"
    path.write_text(_laughs())
    return path


def test_load_pipeline_refuses_a_billion_laughs_at_once(bomb, faults):
    faults.injected()
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_pipeline(bomb)
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert str(bomb) in message and f"more than {MAX_YAML_NODES:,} values" in message and "aliases" in message


@pytest.mark.parametrize("command", [["validate"], ["run"], ["launch", "--once", "--dir"]])
def test_cli_commands_refuse_the_bomb_with_a_clear_error(command, bomb, osmosis_cli, faults):
    faults.injected()
    target = bomb.parent if command[-1] == "--dir" else bomb
    started = time.monotonic()
    done = osmosis_cli(*command, target, timeout=60)
    assert time.monotonic() - started < 60
    assert done.returncode == 2, done.stderr
    assert "bomb.yaml" in done.stderr and "aliases" in done.stderr
    assert "Traceback" not in done.stderr


def test_too_many_aliases_are_refused(tmp_path, faults):
    faults.injected()
    refs = "\n".join(f"  k{i}: *v" for i in range(150))
    path = tmp_path / "many.yaml"
    path.write_text(f"id: many\nx: &v 1\nsource:\n{refs}\n")
    with pytest.raises(ConfigError, match=r"more than 100 aliases"):
        load_pipeline(path)


def test_a_recursive_anchor_is_refused(tmp_path, faults):
    faults.injected()
    path = tmp_path / "loop.yaml"
    path.write_text("id: loop\nsource: &s\n  type: rss\n  again: *s\n")
    with pytest.raises(ConfigError, match=r"refers to itself"):
        load_pipeline(path)


def test_honest_aliases_still_work(tmp_path, faults):
    path = tmp_path / "ok.yaml"
    path.write_text(
        "id: news\n"
        "defaults: &src {type: rss, timeout: 5s}\n"
        "source:\n  <<: *src\n  url: http://127.0.0.1:9/feed.xml\n"
        "sink: {type: jsonl, path: out}\n"
    )
    with pytest.raises(ConfigError) as info:  # 'defaults' is not a pipeline key: the aliases were read fine
        load_pipeline(path)
    assert "defaults: unknown key" in str(info.value)
    path.write_text(
        "id: news\nsource: &src\n  type: rss\n  url: http://127.0.0.1:9/feed.xml\n  headers: &h {Accept: '*/*'}\n"
        "sink: {type: jsonl, path: out}\n"
    )
    spec = load_pipeline(path)
    assert spec.source.options["headers"] == {"Accept": "*/*"}
    faults.checked(1)
