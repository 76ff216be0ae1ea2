"""One sync run: lease, window, Beam job, publish, commit (DESIGN.md's seven steps), and crash repair.

Example::

    from osmosis_beam.config import load_pipeline
    from osmosis_beam.state.factory import open_store
    from osmosis_beam.sync.runner import SyncRunner
    run = SyncRunner(load_pipeline("pipelines/tech_news.yaml"), open_store()).run()
"""
from __future__ import annotations

from osmosis_beam.sync.runner import SyncRunner

__all__ = ["SyncRunner"]
