"""Web pages as a Beam transform: :class:`ReadFromWeb`.

Example::

    import apache_beam as beam
    from osmosis_beam.io.web.transforms import ReadFromWeb

    with beam.Pipeline() as p:
        p | ReadFromWeb(url="https://example.org/news/", item_selector="article",
                        fields={"title": "h2", "link": "a::attr(href)", "published": "time::attr(datetime)"},
                        date_field="published", since="2024-06-01T00:00:00Z") | beam.Map(print)

The pages are fetched once, politely, when the pipeline is built (robots.txt, rate limit, retries).
"""
from __future__ import annotations

from osmosis_beam.io.read import ReadFromSource
from osmosis_beam.io.web.source import WebConnector

__all__ = ["ReadFromWeb"]


class ReadFromWeb(ReadFromSource):
    """Reads the items scraped from the pages whose ``date_field`` (else fetch time) lies in ``[since, until)``."""

    connector_class = WebConnector
