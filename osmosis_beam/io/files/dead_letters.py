"""The kept dead letters of a pipeline: where they are, what they say, and which were replayed. Beam-free.

Each run publishes its dead letters as ``DEAD_ROOT/<window hi>-<run id>/part-*.jsonl`` (with a
``_manifest.json``), where ``DEAD_ROOT`` is the pipeline's ``dead_letter.path`` or
``HOME/dead_letter/<id>/``. Each line is ``{"step": "3: map", "error": "...", "record": {...}}``.

A replay (:mod:`osmosis_beam.sync.replay`) claims a run's folder by writing ``_replay.json`` there
(``{"run_id": R, "status": "pending"}``) before its sink publishes, and marks it ``done`` after. A
pending claim whose replay died is settled by the sink itself: published means done, else the claim
is dropped and the folder can be replayed again. So every kept dead letter is replayed at most once.

Example::

    from osmosis_beam.io.files.dead_letters import DeadLetterFolder, dead_letter_root, list_folders
    for folder in list_folders(dead_letter_root(spec, home)):
        print(folder.run_id, folder.count, folder.replayed_by)
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from osmosis_beam.core.errors import ConfigError, StateError
from osmosis_beam.io.files.staged import fsync_dir, is_hidden, read_manifest

__all__ = ["DeadLetterFolder", "dead_letter_root", "list_folders", "CLAIM", "find_folders"]

CLAIM = "_replay.json"


def dead_letter_root(spec: Any, home: str | os.PathLike) -> Path:
    """Where ``spec``'s dead letters are published."""
    return Path(spec.dead_letter_path) if spec.dead_letter_path else Path(home) / "dead_letter" / spec.id


@dataclasses.dataclass
class DeadLetterFolder:
    """One run's published dead letters."""

    path: Path
    run_id: str
    window_hi: str | None

    @property
    def files(self) -> list[Path]:
        return sorted(self.path.glob("part-*.jsonl"))

    def letters(self) -> Iterator[dict[str, Any]]:
        """Every dead letter of the run, in file order; an unreadable line is reported as one."""
        for file in self.files:
            with open(file, encoding="utf-8") as fh:
                for number, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        letter = json.loads(line)
                    except ValueError as exc:
                        letter = {"step": "?", "error": f"unreadable dead letter ({file.name}:{number}: {exc})", "record": line}
                    yield letter if isinstance(letter, dict) else {"step": "?", "error": "not a dead letter", "record": letter}

    @property
    def count(self) -> int:
        return sum(1 for _ in self.letters())

    def reasons(self, limit: int = 5) -> list[tuple[str, str, int]]:
        """The most common (step, error) pairs with their counts."""
        counter = collections.Counter((str(l.get("step")), str(l.get("error"))) for l in self.letters())
        return [(step, error, n) for (step, error), n in counter.most_common(limit)]

    # -- replay claims -----------------------------------------------------------------------------
    def claim(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.path / CLAIM).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StateError(f"dead letters {self.path}: unreadable replay claim {CLAIM} ({exc})") from None
        return data if isinstance(data, dict) else None

    def settle(self, is_published: Callable[[str], bool]) -> None:
        """Settle a pending claim left by a replay that stopped: done when its output was published, else dropped."""
        claim = self.claim()
        if claim is None or claim.get("status") != "pending":
            return
        if is_published(str(claim.get("run_id"))):
            self.write_claim(str(claim["run_id"]), "done")
        else:
            (self.path / CLAIM).unlink(missing_ok=True)
            fsync_dir(self.path)

    @property
    def replayed_by(self) -> str | None:
        """The replay run that published these dead letters again (None: kept, not replayed)."""
        claim = self.claim()
        return str(claim["run_id"]) if claim and claim.get("status") == "done" else None

    def write_claim(self, run_id: str, status: str) -> None:
        tmp = self.path / f".{CLAIM}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({"run_id": run_id, "status": status}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path / CLAIM)
        fsync_dir(self.path)


def list_folders(root: str | os.PathLike) -> list[DeadLetterFolder]:
    """The published dead-letter folders under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for entry in sorted(root.iterdir()):
        if is_hidden(entry.name) or not entry.is_dir():
            continue
        manifest = read_manifest(entry) or {}
        run_id = manifest.get("run_id")
        if not isinstance(run_id, str) or not entry.name.endswith(f"-{run_id}"):
            continue
        out.append(DeadLetterFolder(entry, run_id, manifest.get("window_hi")))
    return out


def find_folders(root: str | os.PathLike, run_id: str | None) -> list[DeadLetterFolder]:
    """The folders of ``run_id`` (all when None); an unknown run is a clear error."""
    folders = list_folders(root)
    if run_id is None:
        return folders
    chosen = [f for f in folders if f.run_id == run_id]
    if not chosen:
        known = ", ".join(f.run_id for f in folders[-5:]) or "none"
        raise ConfigError(f"--run {run_id}: no dead letters of that run under {root}; runs with dead letters: {known}")
    return chosen
