"""Secrets: values that must never reach logs, history, state, pipeline options or errors.

A secret option's value is wrapped in :class:`Secret`, whose ``repr`` and ``str``
are ``***``; code that needs the value calls ``reveal()``. ``redact_text`` scrubs
known secret values and URL passwords from any text before it is stored or shown.

Example::

    from osmosis_beam.secrets import Secret, redact_url
    Secret("hunter2")                                   # ***
    redact_url("postgresql://app:hunter2@db/prod")      # 'postgresql://app:***@db/prod'
"""
from __future__ import annotations

import re
from typing import Any, Iterable

__all__ = ["Secret", "reveal", "redact_url", "redact_text", "REDACTED", "is_secret_name"]

REDACTED = "***"
_SECRET_NAMES = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|credential|private[_-]?key|authori[sz]ation|cookie)", re.I
)


class Secret:
    """A value that prints as ``***``. Pickles (it crosses to Beam workers) but never displays."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value.reveal() if isinstance(value, Secret) else value

    def reveal(self) -> Any:
        return self._value

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __getstate__(self):
        return {"v": self._value}

    def __setstate__(self, state) -> None:
        self._value = state["v"]


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
