"""RSS and Atom as a Beam transform: :class:`ReadFromRSS`.

Example::

    import apache_beam as beam
    from osmosis_beam.io.rss.transforms import ReadFromRSS

    with beam.Pipeline() as p:
        read = ReadFromRSS(url="https://example.org/feed.xml", since="2024-06-01T00:00:00Z")
        p | read | beam.Map(print)
    read.end_state()        # ETag, Last-Modified and seen ids: pass as state= next time

The feed is fetched once, when the pipeline is built; with ``state=`` from a previous read an unchanged
feed costs one ``304`` and the read is empty.
"""
from __future__ import annotations

from osmosis_beam.io.read import ReadFromSource
from osmosis_beam.io.rss.source import RSSConnector

__all__ = ["ReadFromRSS"]


class ReadFromRSS(ReadFromSource):
    """Reads the feed entries whose date (``updated``, else ``published``) lies in ``[since, until)``."""

    connector_class = RSSConnector
