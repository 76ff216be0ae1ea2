"""Contract test suites for connectors, sinks and state stores, for the built-ins and for plug-in authors.

Like ``singer_sdk.testing``: write a small harness for your plug-in and subclass the suite in a pytest
module; every contract test then runs against it::

    import pytest
    from osmosis_beam.testing import ConnectorContract

    class TestMyConnector(ConnectorContract):
        @pytest.fixture
        def harness(self):
            return MyHarness()          # a ConnectorHarness: how to store rows, and three broken configs

- :class:`ConnectorContract` (:mod:`osmosis_beam.testing.connector`): window semantics, ties at ``hi``,
  empty windows, cursor order, schema, a split read through Beam, clear errors without secrets.
- :class:`SinkContract` (:mod:`osmosis_beam.testing.sink`): re-runs, repairs, abort, atomic publication,
  full refresh.
- :class:`StateStoreContract` (:mod:`osmosis_beam.testing.state`): watermarks, atomic commits, history, leases.

The suites need pytest (the ``test`` extra). Importing this package imports neither pytest nor Beam.
"""
from __future__ import annotations

from osmosis_beam.core.lazy import lazy_exports

_NAMES = {
    "ConnectorContract": "osmosis_beam.testing.connector",
    "ConnectorHarness": "osmosis_beam.testing.connector",
    "SinkContract": "osmosis_beam.testing.sink",
    "SinkHarness": "osmosis_beam.testing.sink",
    "StateStoreContract": "osmosis_beam.testing.state",
    "Collected": "osmosis_beam.testing.collect",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
