"""The Beam-free core: records, windows, options, errors, secrets, time, encoding and the seed's models.

Nothing here imports Beam or anything above ``osmosis_beam.core``; every other package builds on it.

Example::

    from osmosis_beam.core.window import SyncWindow
    from osmosis_beam.core.timefmt import parse_timestamp
    SyncWindow(parse_timestamp("2024-01-01T00:00:00Z"), parse_timestamp("2024-01-02T00:00:00Z"))
"""
