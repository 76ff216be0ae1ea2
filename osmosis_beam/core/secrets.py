"""Secrets: values that must never reach logs, history, state, pipeline options or errors.

A secret option's value is wrapped in :class:`Secret`, whose ``repr`` and ``str``
are ``***``; code that needs the value calls ``reveal()``. ``redact_text`` scrubs
known secret values and URL passwords from any text before it is stored or shown.

A secret written in the pipeline file with ``${VAR}`` (``${PG_PASSWORD}``, or
``mongodb://app:${MONGO_PASSWORD}@db/``) remembers that text. For a remote runner (portable, Flink,
Dataflow) the job carries only the text (:meth:`Secret.for_workers`), and each worker fills in the
variables from its own environment: the value is never part of the job.

Example::

    from osmosis_beam.core.secrets import Secret, redact_url
    Secret("hunter2")                                   # ***
    redact_url("postgresql://app:hunter2@db/prod")      # 'postgresql://app:***@db/prod'
    Secret("hunter2", env="${PG_PASSWORD}").for_workers()  # pickles as "${PG_PASSWORD}", not the value
"""
from __future__ import annotations

import os
import re
from typing import Any, Iterable

__all__ = [
    "Secret",
    "reveal",
    "redact_url",
    "redact_text",
    "redact_headers",
    "REDACTED",
    "is_secret_name",
    "is_secret_query_key",
    "is_secret_header",
    "url_secrets",
]

REDACTED = "***"
_SECRET_NAMES = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|credential|private[_-]?key|authori[sz]ation|cookie)", re.I
)


class Secret:
    """A value that prints as ``***``. Pickles (it crosses to Beam workers) but never displays.

    ``env`` is the text the value came from when the pipeline file wrote it with ``${VAR}`` s
    (``"${PG_PASSWORD}"``; a bare name means ``${NAME}``). :meth:`for_workers` returns a copy that
    pickles as that text only, so the value never travels inside a job; a worker fills the variables
    in from its own environment.
    """

    __slots__ = ("_value", "_env", "_by_ref", "_where", "_cast", "_store")

    def __init__(self, value: Any, env: str | None = None) -> None:
        if isinstance(value, Secret):
            self._value, self._by_ref, self._where, self._cast = value._value, value._by_ref, value._where, value._cast
            self._store = value._store
            self._env = value._env if not env else env if "${" in env else "${%s}" % env
            return
        self._value = value
        self._env = env if not env or "${" in env else "${%s}" % env
        self._by_ref = False
        self._where = ""
        self._cast = type(value).__name__ if type(value) in (str, int, float) else "str"
        self._store: str | None = None

    @property
    def env(self) -> str | None:
        """The ``${VAR}`` text the value came from in the pipeline file, or None."""
        return self._env

    @property
    def env_names(self) -> tuple[str, ...]:
        """The environment variables ``env`` reads."""
        return tuple(m.group(1) for m in _ENV_VAR.finditer(self._env or ""))

    @property
    def by_reference(self) -> bool:
        """Whether this secret pickles as a reference to ``env`` instead of its value."""
        return self._by_ref

    def reveal(self) -> Any:
        if self._value is _UNRESOLVED:
            self._value = self._resolve()
        return self._value

    def for_workers(self, where: str = "", store: str | None = None) -> "Secret":
        """A copy that pickles as its ``${VAR}`` text, never as the value.

        Where it is unpickled (on a worker), ``reveal()`` fills the variables in from that process's
        environment; a variable the environment lacks is read from ``store`` when given
        (``gcp:PROJECT``: the Google Secret Manager secret named like the variable, latest version).
        ``where`` (``source.password``) names the option in the error a worker raises when a variable
        cannot be found. Raises ValueError when the value came from no variable.
        """
        if not self.env_names:
            raise ValueError("this secret came from no environment variable; it cannot travel by reference")
        if store is not None:
            check_secret_store(store)
        clone = Secret(self)
        clone._by_ref = True
        clone._where = where
        clone._store = store
        return clone

    def _resolve(self) -> Any:
        from osmosis_beam.core.errors import ConfigError

        what = self._where or "a secret option"
        values = {name: os.environ[name] for name in self.env_names if name in os.environ}
        missing = [name for name in self.env_names if name not in values]
        if missing and self._store:
            for name in missing:
                values[name] = _from_store(self._store, name, what)
            missing = []
        if missing:
            names = ", ".join(missing)
            raise ConfigError(
                f"{what}: environment variable {names} is not set on this worker. Secrets reach remote "
                f"workers by name only: set {names} in the workers' environment, or give the runner option "
                "secret_store: gcp:PROJECT to read it from Google Secret Manager"
            )
        text = _ENV_VAR.sub(lambda m: values[m.group(1)], self._env or "")
        try:
            return {"int": int, "float": float}.get(self._cast, str)(text)
        except ValueError:
            raise ConfigError(f"{what}: {self._env} on this worker is not a {self._cast}") from None

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.reveal() == self.reveal()

    def __hash__(self) -> int:
        return hash(("Secret", self.reveal()))

    def __bool__(self) -> bool:
        return bool(self.reveal())

    def __reduce__(self):
        if self._by_ref:
            return (_from_worker_env, (self._env, self._cast, self._where, self._store))
        return (_restore, (self._value, self._env))

    def __copy__(self) -> "Secret":
        return Secret(self)

    def __deepcopy__(self, memo: dict) -> "Secret":
        return Secret(self)


_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")
_UNRESOLVED = object()  # the value of a secret sent by reference, until a worker first reveals it


def _restore(value: Any, env: str | None) -> Secret:
    return Secret(value, env=env)


def _from_worker_env(env: str, cast: str, where: str, store: str | None = None) -> Secret:
    """Unpickles a secret sent by reference: resolved from this process's environment on first use."""
    secret = Secret(None, env=env)
    secret._value = _UNRESOLVED
    secret._by_ref = True
    secret._cast = cast
    secret._where = where
    secret._store = store
    return secret


# -- secret stores: where a worker looks for a variable its environment lacks ----------------------------------
_STORE = re.compile(r"^(?P<kind>[a-z]+):(?P<where>[A-Za-z0-9_.:/-]+)$")
_STORE_CACHE: dict[tuple[str, str], str] = {}


def check_secret_store(store: str) -> None:
    """Raise ValueError unless ``store`` names a known secret store (``gcp:PROJECT``)."""
    match = _STORE.fullmatch(str(store or ""))
    if not match or match["kind"] not in _STORES:
        raise ValueError(f"secret_store: {store!r} is not a secret store; use gcp:PROJECT_ID (Google Secret Manager)")


def _gcp_secret(project: str, name: str) -> str:
    """The latest version of secret ``name`` in Google Secret Manager, read with the worker's credentials."""
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient()
    response = client.access_secret_version(name=f"projects/{project}/secrets/{name}/versions/latest")
    return response.payload.data.decode("utf-8")


_STORES = {"gcp": _gcp_secret}


def _from_store(store: str, name: str, what: str) -> str:
    from osmosis_beam.core.errors import ConfigError

    match = _STORE.fullmatch(store)
    key = (store, name)
    if key not in _STORE_CACHE:
        try:
            _STORE_CACHE[key] = _STORES[match["kind"]](match["where"], name)
        except Exception as exc:  # noqa: BLE001 - reported with the fix, never with a value
            raise ConfigError(
                f"{what}: {name} is neither in this worker's environment nor readable from {store} "
                f"({type(exc).__name__}: {exc}); create the secret {name} there and let the workers' "
                "service account read it (roles/secretmanager.secretAccessor)"
            ) from None
    return _STORE_CACHE[key]


def reveal(value: Any) -> Any:
    """The plain value of a Secret; other values unchanged."""
    return value.reveal() if isinstance(value, Secret) else value


def is_secret_name(name: str) -> bool:
    """Whether an option or field name looks like it holds a secret."""
    return bool(_SECRET_NAMES.search(name or ""))


# -- redaction by rule -------------------------------------------------------------------------------------------
#
# What counts as a secret without being declared one (documented in the README, "Secrets"):
#
# - URL userinfo: the password of ``scheme://user:password@host``; for http(s), ws(s) and ftp URLs a lone
#   ``user@`` too (``https://TOKEN@host`` carries a token as the user name).
# - Query keys (``?key=...&...``), compared case-insensitively with ``-``, ``_`` and ``.`` as separators and
#   camelCase split: a key that is, or ends with a part, ``key``, ``apikey``, ``token``, ``secret``,
#   ``password``, ``passwd``, ``pwd``, ``pass``, ``sig``, ``signature``, ``auth``, ``credential(s)``,
#   ``session``, ``sessionid``, ``jwt``; or that contains ``password``, ``secret``, ``token``, ``apikey``,
#   ``api_key``, ``access_key``, ``private_key``. So ``key``, ``api_key``, ``access_key``, ``sig``,
#   ``X-Amz-Signature``, ``access_token``, ``client_secret`` and ``sessionToken`` are secret; ``page``,
#   ``q``, ``id`` and ``monkey`` are not.
# - Header names: ``Authorization``, ``Proxy-Authorization``, ``Cookie``, ``Set-Cookie``, every ``X-Auth*``,
#   and every name the query-key rule matches (``X-Api-Key``, ``X-Access-Token``, ``Private-Token``).
_PART_WORDS = frozenset(
    "key apikey token secret password passwd pwd pass sig signature auth credential credentials session "
    "sessionid jwt".split()
)
_CONTAINED = ("password", "passwd", "secret", "token", "apikey", "api_key", "access_key", "private_key")
_HEADER_NAMES = frozenset(("authorization", "proxy-authorization", "cookie", "set-cookie"))
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _parts(name: str) -> list[str]:
    return [p for p in re.split(r"[-_.\s]+", _CAMEL.sub("_", str(name or "")).lower()) if p]


def is_secret_query_key(name: str) -> bool:
    """Whether a URL query key holds a secret by the documented rule (``api_key``, ``sig``, ``X-Amz-Signature``)."""
    parts = _parts(name)
    if not parts:
        return False
    joined = "_".join(parts)
    return parts[-1] in _PART_WORDS or any(word in joined for word in _CONTAINED) or "".join(parts) in _PART_WORDS


def is_secret_header(name: str) -> bool:
    """Whether an HTTP header holds a secret by the documented rule (``Authorization``, ``X-Auth*``, ``*-Api-Key``)."""
    lower = str(name or "").strip().lower()
    return lower in _HEADER_NAMES or lower.startswith("x-auth") or is_secret_query_key(lower) or is_secret_name(lower)


def redact_headers(headers: Any) -> dict[str, Any]:
    """A copy of ``headers`` with the values of secret headers as ``***``."""
    return {k: REDACTED if is_secret_header(str(k)) else v for k, v in dict(headers or {}).items()}


# The password runs to the LAST '@' of the authority, so an unescaped '@' in it does not leak its tail.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^/?#\s'\"]*)@")
# A lone user name before '@' in web URLs: https://ghp_TOKEN@github.com/...
_URL_USER = re.compile(r"(?P<scheme>(?:https?|wss?|ftps?)://)(?P<user>[^:/@\s?#'\"]+)@(?=[^\s/?#'\"@]+)", re.I)
# Any key ending in a secret word: password=, db_password=, access_token=, client_secret=, x-api-key=.
_KV_PASSWORD = re.compile(
    r"(?P<key>(?<![A-Za-z0-9])[A-Za-z0-9_.-]*?(?:password|passwd|pwd|secret|token|api[_-]?key|apikey)\s*=\s*)"
    r"(?P<val>'[^']*'|\"[^\"]*\"|[^\s&;]+)",
    re.I,
)
# A query parameter (after ? or & or ;): the key decides by the query-key rule.
_QUERY_PARAM = re.compile(r"(?P<lead>[?&;])(?P<key>[A-Za-z0-9_.\-\[\]]+)=(?P<val>[^&#\s'\"<>]*)")
# A header in a dict repr or JSON ('X-Api-Key': 'v', "Authorization": "Bearer v").
_QUOTED_HEADER = re.compile(r"(?P<q>['\"])(?P<name>[A-Za-z0-9_-]+)(?P=q)(?P<sep>\s*:\s*)(?P<vq>['\"])(?P<val>(?:(?!(?P=vq)).)*)(?P=vq)")
# A header line (X-Api-Key: v, Authorization: Bearer v): hyphenated names and the well-known ones only.
_HEADER_LINE = re.compile(
    r"(?P<name>(?<![A-Za-z0-9-])(?:[A-Za-z0-9]+-[A-Za-z0-9-]+|authorization|cookie))(?P<sep>\s*:\s*)"
    r"(?P<val>[^\r\n'\",}]+)",
    re.I,
)
_BEARER = re.compile(r"(?P<scheme>\b(?:Bearer|Basic|Token|Digest)\s+)(?P<val>[A-Za-z0-9._~+/=-]{6,})")
_ENV_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


def redact_url(text: str) -> str:
    """``text`` with URL passwords, web URL user names, secret query values and ``password=...`` as ``***``.

    A value written as a pure ``${VAR}`` reference names a secret without holding it, and is kept.
    """

    def url(m: re.Match) -> str:
        pw = m["pw"] if _ENV_REF.fullmatch(m["pw"]) else REDACTED
        return f"{m['scheme']}{m['user']}:{pw}@"

    def user(m: re.Match) -> str:
        return m[0] if _ENV_REF.fullmatch(m["user"]) or m["user"] == REDACTED else f"{m['scheme']}{REDACTED}@"

    def kv(m: re.Match) -> str:
        return m[0] if _ENV_REF.fullmatch(m["val"].strip("'\"")) else f"{m['key']}{REDACTED}"

    def query(m: re.Match) -> str:
        if not m["val"] or m["val"] == REDACTED or _ENV_REF.fullmatch(m["val"]) or not is_secret_query_key(m["key"]):
            return m[0]
        return f"{m['lead']}{m['key']}={REDACTED}"

    out = _URL_PASSWORD.sub(url, str(text))
    out = _URL_USER.sub(user, out)
    out = _QUERY_PARAM.sub(query, out)
    return _KV_PASSWORD.sub(kv, out)


def url_secrets(text: str) -> list[str]:
    """The secret values a URL (or any text) holds by the rules above, as written and percent-decoded.

    ``redact_text`` scrubs these wherever they appear, so that a password echoed alone by a library
    (``invalid percent-encoded token: "pa%ss"``) is hidden too.
    """
    from urllib.parse import unquote

    found: list[str] = []
    for m in _URL_PASSWORD.finditer(str(text)):
        if not _ENV_REF.fullmatch(m["pw"]):
            found.append(m["pw"])
    for m in _URL_USER.finditer(str(text)):
        if not _ENV_REF.fullmatch(m["user"]):
            found.append(m["user"])
    for m in _QUERY_PARAM.finditer(str(text)):
        if m["val"] and is_secret_query_key(m["key"]) and not _ENV_REF.fullmatch(m["val"]):
            found.append(m["val"])
    out: list[str] = []
    for value in found:
        for form in (value, unquote(value, errors="replace")):
            if form and form not in out:
                out.append(form)
    return out


def redact_text(text: str | None, secrets: Iterable[Any] = ()) -> str | None:
    """``text`` with every known secret value, and every secret found by rule, replaced by ``***``.

    Known values come from ``secrets`` (and the passwords and secret query values inside them, when
    they are URLs); the rules are those of :func:`redact_url` plus secret headers, in header lines and
    in dict or JSON form, and ``Bearer``/``Basic`` credentials.
    """
    if text is None:
        return None
    out = str(text)
    values: set[str] = set()
    for secret in secrets:
        value = reveal(secret)
        if value is None:
            continue
        value = str(value)
        values.add(value)
        values.update(url_secrets(value))
    # Longest first: replacing "abc" before "abcdef" would leave "***def" showing part of the longer one.
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= 3 and value != REDACTED:
            out = out.replace(value, REDACTED)

    def quoted(m: re.Match) -> str:
        if not is_secret_header(m["name"]) or m["val"] in ("", REDACTED) or _ENV_REF.fullmatch(m["val"]):
            return m[0]
        return f"{m['q']}{m['name']}{m['q']}{m['sep']}{m['vq']}{REDACTED}{m['vq']}"

    def line(m: re.Match) -> str:
        value = m["val"].strip()
        if not is_secret_header(m["name"]) or value in ("", REDACTED) or _ENV_REF.fullmatch(value):
            return m[0]
        return f"{m['name']}{m['sep']}{REDACTED}"

    out = _QUOTED_HEADER.sub(quoted, out)
    out = _HEADER_LINE.sub(line, out)
    out = _BEARER.sub(lambda m: m[0] if m["val"] == REDACTED else f"{m['scheme']}{REDACTED}", out)
    return redact_url(out)
