"""A tiny third-party osmosis-beam plug-in: a SQLite table as a connector (``sqlite_example``) and a sink.

It comes in through the entry-point groups ``osmosis_beam.connectors`` and ``osmosis_beam.sinks`` (see
``pyproject.toml``), and its ``contract_tests.py`` runs osmosis-beam's contract suites against it::

    source: {type: sqlite_example, path: ./events.db, table: events}
    sink: {type: sqlite_example, path: ./copy.db, table: events}
"""
