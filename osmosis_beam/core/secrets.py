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

__all__ = ["Secret", "reveal", "redact_url", "redact_text", "REDACTED", "is_secret_name"]

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


# The password runs to the LAST '@' of the authority, so an unescaped '@' in it does not leak its tail.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^/?#\s'\"]*)@")
# Any key ending in a secret word: password=, db_password=, access_token=, client_secret=, x-api-key=.
_KV_PASSWORD = re.compile(
    r"(?P<key>(?<![A-Za-z0-9])[A-Za-z0-9_.-]*?(?:password|passwd|pwd|secret|token|api[_-]?key|apikey)\s*=\s*)"
    r"(?P<val>'[^']*'|\"[^\"]*\"|[^\s&;]+)",
    re.I,
)
_ENV_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


def redact_url(text: str) -> str:
    """Replace the password in every ``scheme://user:password@host`` and ``password=...`` in ``text``.

    A password written as a pure ``${VAR}`` reference names a secret without holding it, and is kept.
    """

    def url(m: re.Match) -> str:
        pw = m["pw"] if _ENV_REF.fullmatch(m["pw"]) else REDACTED
        return f"{m['scheme']}{m['user']}:{pw}@"

    def kv(m: re.Match) -> str:
        return m[0] if _ENV_REF.fullmatch(m["val"].strip("'\"")) else f"{m['key']}{REDACTED}"

    return _KV_PASSWORD.sub(kv, _URL_PASSWORD.sub(url, text))


def redact_text(text: str | None, secrets: Iterable[Any] = ()) -> str | None:
    """``text`` with every known secret value and URL password replaced by ``***``."""
    if text is None:
        return None
    out = str(text)
    values = {str(reveal(secret)) for secret in secrets if reveal(secret) is not None}
    # Longest first: replacing "abc" before "abcdef" would leave "***def" showing part of the longer one.
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= 3:
            out = out.replace(value, REDACTED)
    return redact_url(out)
