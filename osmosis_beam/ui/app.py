"""The dashboard's web app: Starlette routes, Jinja2 pages rendered on the server, no JavaScript.

Security: it binds to 127.0.0.1 unless told otherwise, and a non-loopback bind needs a token (sent once as
``?token=`` or ``Authorization: Bearer``, then kept in an HttpOnly SameSite=Strict cookie). On loopback the
Host header must name a loopback host (no DNS rebinding). Every action is a POST carrying the CSRF token in
a form field, and its Origin (else Referer) must be this server.

Example::

    from osmosis_beam.ui.app import create_app
    app = create_app(store, home="/var/lib/osmosis")      # an ASGI app; `osmosis ui` serves it with uvicorn
"""
from __future__ import annotations

import hmac
import secrets as _secrets
import urllib.parse
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from osmosis_beam.core.errors import ConfigError, OsmosisError
from osmosis_beam.state.store import StateStore
from osmosis_beam.ui import svg
from osmosis_beam.ui.data import STATUSES, Dashboard

__all__ = ["create_app", "TOKEN_COOKIE"]

TOKEN_COOKIE = "osmosis_ui_token"
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _host_of(netloc: str) -> str:
    host = netloc.rsplit("@", 1)[-1]
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.split(":")[0]


def create_app(store: StateStore, home: str | Path, *, token: str | None = None, loopback: bool = True) -> Starlette:
    """The dashboard over ``store``; ``token`` required for every request when given."""
    board = Dashboard(store, home)
    csrf = _secrets.token_urlsafe(32)
    env = Environment(loader=PackageLoader("osmosis_beam.ui", "templates"), autoescape=select_autoescape(["html"]))
    env.filters["ts"] = lambda v: v.strftime("%Y-%m-%d %H:%M:%S") if hasattr(v, "strftime") else (v or "-")
    env.filters["secs"] = svg.human_seconds
    env.filters["short_ts"] = lambda v: (str(v)[:19].replace("T", " ") if v else "-")

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(
            csrf=csrf, statuses=STATUSES, location=store.location, flash=request.query_params.get("msg"), **context
        )
        return HTMLResponse(html, status_code=status_code, headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
        })

    def problem(request: Request, message: str, code: int) -> HTMLResponse:
        return page(request, "error.html", status_code=code, message=message)

    async def pipelines(request: Request) -> Response:
        items = board.pipelines()
        plot = svg.bars([(p["pipeline"], p["freshness_seconds"]) for p in items], unit="s", label="freshness per pipeline")
        return page(request, "pipelines.html", pipelines=items, freshness_plot=plot)

    async def pipeline(request: Request) -> Response:
        try:
            item = board.pipeline(request.path_params["pid"])
        except ConfigError as exc:
            return problem(request, exc.message, 404)
        runs = item["plot_runs"]
        item["records_plot"] = svg.time_series([(r["started_at"], r["records_written"]) for r in runs],
                                               unit="records", label="records written per run")
        item["duration_plot"] = svg.time_series([(r["started_at"], r["duration_seconds"] or 0) for r in runs],
                                                unit="s", label="duration per run")
        return page(request, "pipeline.html", p=item)

    async def runs(request: Request) -> Response:
        q = request.query_params
        try:
            number = int(q.get("page") or 1)
        except ValueError:
            number = 1
        data = board.runs(q.get("pipeline") or None, q.get("status") or None, number)
        names = [p["pipeline"] for p in board.pipelines()]

        def link(n: int) -> str:
            return "/runs?" + urllib.parse.urlencode({k: v for k, v in (("pipeline", data["pipeline"]), ("status", data["status"]), ("page", n)) if v})

        return page(request, "runs.html", data=data, names=names, link=link)

    async def run(request: Request) -> Response:
        try:
            return page(request, "run.html", r=board.run(request.path_params["run_id"]))
        except ConfigError as exc:
            return problem(request, exc.message, 404)

    async def action(request: Request) -> Response:
        pid = request.path_params["pid"]
        what = request.path_params["what"]
        origin = request.headers.get("origin") or request.headers.get("referer")
        if not origin or urllib.parse.urlsplit(origin).netloc != request.headers.get("host"):
            return problem(request, "refused: this action must come from a page of this dashboard (Origin/Referer check)", 403)
        form = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
        if not hmac.compare_digest((form.get("csrf") or [""])[0], csrf):
            return problem(request, "refused: missing or wrong CSRF token; reload the page and try again", 403)
        try:
            if what == "run":
                message = board.run_now(pid)
            elif what in ("pause", "resume"):
                message = board.set_paused(pid, what == "pause")
            else:
                return problem(request, f"unknown action {what!r}", 404)
        except OsmosisError as exc:
            return RedirectResponse(f"/pipelines/{urllib.parse.quote(pid)}?" + urllib.parse.urlencode({"msg": exc.message}), 303)
        return RedirectResponse(f"/pipelines/{urllib.parse.quote(pid)}?" + urllib.parse.urlencode({"msg": message}), 303)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def guard(request: Request, call_next):
        if loopback and _host_of(request.headers.get("host", "")) not in _LOOPBACK:
            return PlainTextResponse("refused: unexpected Host header for a dashboard bound to loopback", 421)
        if token:
            given = request.query_params.get("token")
            bearer = request.headers.get("authorization", "")
            if given and hmac.compare_digest(given, token):
                rest = urllib.parse.urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
                response = RedirectResponse(request.url.path + (f"?{rest}" if rest else ""), 303)
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
                return response
            ok = hmac.compare_digest(request.cookies.get(TOKEN_COOKIE, ""), token) or (
                bearer.startswith("Bearer ") and hmac.compare_digest(bearer[7:], token))
            if not ok:
                return PlainTextResponse("token required: open the dashboard's URL with ?token=...", 401)
        try:
            return await call_next(request)
        except OsmosisError as exc:
            return PlainTextResponse(f"error: {exc.message}", 500)

    app = Starlette(routes=[
        Route("/", pipelines), Route("/pipelines/{pid}", pipeline), Route("/runs", runs),
        Route("/runs/{run_id}", run), Route("/pipelines/{pid}/{what}", action, methods=["POST"]),
        Route("/healthz", health),
    ], middleware=[Middleware(BaseHTTPMiddleware, dispatch=guard)])

    app.state.dashboard = board
    return app
