"""The ``html_to_text`` step: markup to plain text, one line per block.

Example::

    from osmosis_beam.steps.text import html_to_text
    html_to_text("<p>Hello <b>world</b></p><p>Bye</p>")             # 'Hello world\nBye'
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

from osmosis_beam.steps.base import ConfiguredStep, field_list

__all__ = ['html_to_text', 'HtmlToTextStep']


# -- html_to_text --------------------------------------------------------------------------------
_BLOCK_TAGS = frozenset((
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "figure", "footer",
    "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section",
    "table", "tbody", "td", "th", "thead", "tr", "ul",
))


_SKIP_TAGS = frozenset(("script", "style", "head", "title", "noscript", "template", "svg", "iframe", "object"))


_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._pre = 0

    def handle_starttag(self, tag, attrs):
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
            self._pre += tag == "pre"

    def handle_startendtag(self, tag, attrs):
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
            if tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data if self._pre else data.replace("\n", " "))


def html_to_text(markup: str) -> str:
    """Readable text from HTML: tags, scripts and styles removed, entities decoded, one line per block (no blank lines)."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)


class HtmlToTextStep(ConfiguredStep):
    """Strip markup from HTML fields (RSS summaries, scraped pages): ``html_to_text: [summary, content]``.

    Tags, scripts and styles go, entities are decoded, block elements become line breaks. Nulls and
    missing fields are left alone; a value that is not text is an error (dead letter).
    """

    name = "html_to_text"

    def __init__(self, fields: list[str]) -> None:
        super().__init__()
        self.fields = field_list(fields, "html_to_text")

    def process(self, records):
        out = []
        for record in records:
            new = dict(record)
            for field in self.fields:
                value = new.get(field)
                if value is None:
                    continue
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                if not isinstance(value, str):
                    raise TypeError(f"html_to_text: field {field!r} is a {type(value).__name__}, not text")
                new[field] = html_to_text(value)
            out.append(new)
        return out
