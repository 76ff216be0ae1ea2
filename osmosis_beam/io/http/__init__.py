"""The HTTP client web and rss share: politeness, robots.txt, retries, conditional GET, caps and deadlines.

Modules: ``client`` (:class:`~osmosis_beam.io.http.client.HttpClient`), ``deadline`` (a total deadline per
request, against slowloris servers), ``charset`` (decoding as browsers do), ``errors`` (connection failures
said plainly), ``options`` (the options every HTTP source declares), ``urls`` (checks and credentials).

Example::

    from osmosis_beam.io.http.client import HttpClient
    client = HttpClient(connector.config, what="web", accept="text/html")
    page = client.get("https://example.org/news/", conditional={"etag": '"v1"'})
"""
