"""The dashboard: ``osmosis ui``, a local web app over the state store (install ``osmosis-beam[ui]``).

Pages: pipelines (source, sink, schedule, next run, freshness, last status), runs (filters, paging), one
run (window, counts, duration, the whole redacted error, the first dead letters), plots as inline SVG.
Actions (POST + CSRF token + Origin check): run a pipeline now (under its lease) and pause or resume it.

Example::

    from osmosis_beam.ui import serve
    serve(store, home=".osmosis", port=8321)               # http://127.0.0.1:8321/
"""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from osmosis_beam.core.errors import ConfigError
from osmosis_beam.state.store import StateStore

__all__ = ["serve", "is_loopback", "DEFAULT_PORT", "TOKEN_ENV"]

DEFAULT_PORT = 8321
TOKEN_ENV = "OSMOSIS_UI_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(store: StateStore, home: str | Path, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          token: str | None = None) -> None:
    """Serve the dashboard until interrupted. A non-loopback ``host`` needs ``token`` (or ``$OSMOSIS_UI_TOKEN``)."""
    try:
        import uvicorn

        from osmosis_beam.ui.app import create_app
    except ImportError as exc:
        raise ConfigError(f"osmosis ui needs the dashboard's packages ({exc.name} is missing): pip install 'osmosis-beam[ui]'") from None
    token = token or os.environ.get(TOKEN_ENV) or None
    loopback = is_loopback(host)
    if not loopback and not token:
        raise ConfigError(f"--host {host}: binding beyond loopback needs a token (--token or ${TOKEN_ENV}); refused")
    app = create_app(store, home, token=token, loopback=loopback)
    print(f"osmosis dashboard on http://{host}:{port}/ (state {store.location}); Ctrl-C stops it", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, server_header=False)
