"""A self-contained HTML report: sections of facts, figures (PNG embedded as base64) and notes, one file with
no scripts and no external resources, written atomically."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deepsmlm.io.atomic import write_atomic

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPORT_SUFFIXES = (".html", ".htm")
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table.facts { border-collapse: collapse; margin: .5em 0; }
table.facts th { text-align: left; font-weight: 600; padding: .15em 1.2em .15em 0; vertical-align: top; }
table.facts td { padding: .15em 0; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; } p.note { color: #8a4b00; }
pre { background: #f4f4f4; padding: .6em; white-space: pre-wrap; word-break: break-all; }
"""


@dataclass(frozen=True)
class ReportFigure:
    """A PNG image (its bytes), what it shows (``alt``) and a caption."""

    png: bytes
    alt: str
    caption: str = ""


@dataclass(frozen=True)
class Section:
    """A report section: a heading, (label, value) facts, figures, notes (a sentence each), a code block and
    the element id (``anchor``) a link or a test finds it by."""

    title: str
    facts: Sequence[tuple[str, str]] = ()
    figures: Sequence[ReportFigure] = ()
    notes: Sequence[str] = ()
    code: str = ""
    anchor: str = ""


def _image(figure: ReportFigure) -> str:
    if not figure.png.startswith(PNG_SIGNATURE):
        raise ValueError(f"figure {figure.alt!r}: not PNG data")
    data = base64.b64encode(figure.png).decode("ascii")
    caption = f"<figcaption>{html.escape(figure.caption)}</figcaption>" if figure.caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(figure.alt)}">{caption}</figure>'


def _section(section: Section) -> str:
    parts = [f'<section id="{html.escape(section.anchor)}">' if section.anchor else "<section>",
             f"<h2>{html.escape(section.title)}</h2>"]
    if section.facts:
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in section.facts)
        parts.append(f'<table class="facts">{rows}</table>')
    parts += [f'<p class="note">{html.escape(note)}</p>' for note in section.notes]
    parts += [_image(f) for f in section.figures]
    if section.code:
        parts.append(f"<pre><code>{html.escape(section.code)}</code></pre>")
    parts.append("</section>")
    return "\n".join(parts)


def report_html(title: str, sections: Sequence[Section]) -> str:
    """The page: ``title`` and the ``sections`` in order (text escaped, PNGs inline, a style sheet inline)."""
    body = "\n".join(_section(s) for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n")


def write_report(path: str | os.PathLike, title: str, sections: Sequence[Section]) -> Path:
    """Write :func:`report_html` to ``path`` (UTF-8) atomically; returns the path."""
    page = report_html(title, sections)
    return write_atomic(path, lambda p: p.write_text(page, encoding="utf-8"))
