"""Decoding fetched documents as browsers do: byte-order mark, HTTP charset, ``<meta charset>``, detection.

Charset labels map to the codecs the WHATWG Encoding Standard decodes them with (``iso-8859-1`` is
read as windows-1252, ``gb2312`` as gb18030, ...); a document that declares nothing and is not UTF-8
is detected with charset-normalizer, preferring windows-1252 as browsers do.

Example::

    from osmosis_beam.io.http.charset import decode_body
    text, codec, how = decode_body(b"caf\xe9", "text/html")     # ('café', 'cp1252', 'detected')
"""
from __future__ import annotations

import codecs
import re

__all__ = ["decode_body", "codec_for", "charset_param"]

_META_PRESCAN = 1024  # the HTML standard's encoding prescan looks at the first 1024 bytes

# WHATWG Encoding Standard: labels browsers decode with a superset codec.
_WHATWG = {
    **dict.fromkeys(
        ("ascii", "us-ascii", "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1", "l1", "cp819",
         "ibm819", "iso-ir-100", "csisolatin1", "x-cp1252", "windows-1252", "cp1252"),
        "cp1252",
    ),
    **dict.fromkeys(("iso-8859-9", "iso8859-9", "latin5", "l5", "windows-1254"), "cp1254"),
    **dict.fromkeys(("tis-620", "iso-8859-11", "windows-874", "dos-874"), "cp874"),
    **dict.fromkeys(("gb2312", "gbk", "x-gbk", "csgb2312", "chinese"), "gb18030"),
    **dict.fromkeys(("euc-kr", "ks_c_5601-1987", "windows-949", "csEUC-KR".lower()), "cp949"),
    **dict.fromkeys(("shift_jis", "shift-jis", "sjis", "ms_kanji", "x-sjis", "windows-31j", "csshiftjis"), "cp932"),
}
_META_CHARSET = re.compile(rb"<meta\b[^>]*?charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.I)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def codec_for(label: str | None) -> str | None:
    """The Python codec for an encoding label, or None when the label is unknown."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    label = _WHATWG.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def charset_param(content_type: str | None) -> str | None:
    for part in (content_type or "").split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip("\"'")
    return None


def decode_body(body: bytes, content_type: str | None) -> tuple[str, str, str]:
    """``(text, codec, how)``: BOM, then the HTTP charset, then ``<meta charset>``, then detection."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body[len(bom):].decode(name, errors="replace"), name, "byte-order mark"
    http = codec_for(charset_param(content_type))
    if http:
        return body.decode(http, errors="replace"), http, "HTTP charset"
    match = _META_CHARSET.search(body[:_META_PRESCAN])
    meta = codec_for(match.group(1).decode("ascii", "replace")) if match else None
    if meta:
        if meta.startswith("utf-16"):  # a page that can state this in ASCII is not UTF-16 (HTML standard)
            meta = "utf-8"
        return body.decode(meta, errors="replace"), meta, "<meta charset>"
    try:
        return body.decode("utf-8"), "utf-8", "detected"
    except UnicodeDecodeError:
        pass
    guess = None
    try:
        import charset_normalizer

        results = list(charset_normalizer.from_bytes(body))
        if results:
            best = results[0]
            # Browsers fall back to windows-1252; prefer it when it reads about as cleanly as the best guess.
            western = next((m for m in results if m.encoding == "cp1252" and m.chaos <= best.chaos + 0.1), None)
            guess = codec_for((western or best).encoding)
    except ImportError:  # pragma: no cover - requests depends on charset_normalizer
        pass
    guess = guess or "cp1252"
    return body.decode(guess, errors="replace"), guess, "detected"
