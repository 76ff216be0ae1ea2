"""The documented redaction rules (README "Secrets"): which URL parts, query keys and headers are secret."""
from __future__ import annotations

import pytest

from osmosis_beam.core.secrets import (
    is_secret_header,
    is_secret_query_key,
    redact_headers,
    redact_text,
    redact_url,
    url_secrets,
)


@pytest.mark.parametrize("key", ["key", "api_key", "apikey", "apiKey", "access_key", "sig", "signature", "token",
                                 "access_token", "refresh-token", "sessionToken", "secret", "client_secret",
                                 "password", "passwd", "pwd", "X-Amz-Signature", "X-Amz-Credential", "auth", "jwt"])
def test_secret_query_keys(key):
    assert is_secret_query_key(key)
    assert redact_url(f"https://h/p?page=2&{key}=V4lue&q=x") == f"https://h/p?page=2&{key}=***&q=x"


@pytest.mark.parametrize("key", ["page", "q", "id", "monkey", "format", "sort", "keyword", "signup", "lang"])
def test_plain_query_keys(key):
    assert not is_secret_query_key(key)
    assert redact_url(f"https://h/p?{key}=V4lue") == f"https://h/p?{key}=V4lue"


@pytest.mark.parametrize("name", ["Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Auth",
                                  "X-Auth-User", "X-Api-Key", "Private-Token", "X-Access-Token", "X-Client-Secret"])
def test_secret_headers(name):
    assert is_secret_header(name)
    assert redact_headers({name: "v", "Accept": "text/html"}) == {name: "***", "Accept": "text/html"}


@pytest.mark.parametrize("name", ["Accept", "User-Agent", "Content-Type", "If-None-Match", "X-Request-Id"])
def test_plain_headers(name):
    assert not is_secret_header(name)


@pytest.mark.parametrize(
    "text, shown",
    [
        ("postgresql://app:hunter2@db/prod", "postgresql://app:***@db/prod"),
        ("https://ghp_T0ken@github.com/o/r", "https://***@github.com/o/r"),
        ("mongodb://app@db/x", "mongodb://app@db/x"),  # a lone user of a database URL is a name, not a secret
        ("postgresql://app:${PG_PASSWORD}@db/x", "postgresql://app:${PG_PASSWORD}@db/x"),  # a reference, kept
        ("{'X-Api-Key': 'k3y-v4lue', 'Accept': '*/*'}", "{'X-Api-Key': '***', 'Accept': '*/*'}"),
        ('{"Authorization": "Bearer abcdef123"}', '{"Authorization": "***"}'),
        ("X-Auth-Token: abcdef\nAccept: text/html", "X-Auth-Token: ***\nAccept: text/html"),
        ("sent Bearer eyJhbGciOi.x.y to the server", "sent Bearer *** to the server"),
        ("unknown key: foo; Key (id)=(5) already exists", "unknown key: foo; Key (id)=(5) already exists"),
    ],
)
def test_redact_text_by_rule(text, shown):
    assert redact_text(text) == shown


def test_secrets_inside_known_urls_are_scrubbed_wherever_they_appear():
    dsn = "postgresql://app:pa%zz-w0rd@db/x"
    assert url_secrets(dsn) == ["pa%zz-w0rd"]
    assert redact_text('invalid percent-encoded token: "pa%zz-w0rd"', [dsn]) == 'invalid percent-encoded token: "***"'
    url = "https://h/f?api_key=AbC%2Fdef"
    assert set(url_secrets(url)) == {"AbC%2Fdef", "AbC/def"}  # as written and percent-decoded
    assert redact_text("the server echoed AbC/def", [url]) == "the server echoed ***"
