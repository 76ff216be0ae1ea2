"""The state store: sources, sync jobs, watermarks, sync history and leases.

Example::

    from osmosis_beam.state.factory import open_store
    store = open_store(home="./.osmosis")          # SQLite at ./.osmosis/state.db
    store.get_watermark("tech_news")
"""
from __future__ import annotations

from osmosis_beam.state.factory import open_store
from osmosis_beam.state.store import Lease, StateStore, Watermark, resolve_home

__all__ = ["StateStore", "Lease", "Watermark", "open_store", "resolve_home"]
