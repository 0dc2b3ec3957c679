#!/usr/bin/env python3
"""docs/user-guide.md -> cach_qgis/help/user-guide.html: the user guide the plugin's Help opens,
offline, with its images inside (data URIs), so the one file in the plugin zip is the guide.

    python3 scripts/user_guide_html.py           # write it
    python3 scripts/user_guide_html.py --check   # exit 1 when the HTML is not up to date

Standard library only: it converts the Markdown this guide uses (headings, paragraphs, lists,
tables, fenced code, images, links, inline code, bold and italics). Headings get ids (see
``slug``) that Help buttons open directly.
"""

from __future__ import annotations

import argparse
import base64
import html
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "docs" / "user-guide.md"
TARGET = ROOT / "cach_qgis" / "help" / "user-guide.html"
STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:1em auto;padding:0 1em;line-height:1.45}"
    "img{max-width:100%;border:1px solid #ccc}code{background:#f3f3f3;padding:0 .2em}"
    "pre{background:#f3f3f3;padding:.6em;overflow:auto}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.25em .5em;vertical-align:top}"
)


def slug(title: str) -> str:
    """'2. Index a folder of rasters' -> 'index-a-folder-of-rasters'."""
    text = re.sub(r"^\d+\.\s*", "", title.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def _image(match: re.Match, base: Path) -> str:
    alt, src = match.group(1), match.group(2)
    path = base / src
    data = base64.b64encode(path.read_bytes()).decode()
    kind = "png" if path.suffix.lower() == ".png" else "jpeg"
    return f'<img alt="{html.escape(alt)}" src="data:image/{kind};base64,{data}">'


def inline(text: str, base: Path) -> str:
    """Inline Markdown of one line or paragraph: code first (nothing inside it is converted)."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        part = html.escape(part, quote=False)
        part = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", lambda m: _image(m, base), part)
        part = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', part)
        part = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", part)
        part = re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"<i>\1</i>", part)
        out.append(part)
    return "".join(out)


def _table(rows: list[str], base: Path) -> str:
    cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
    head, body = cells[0], [r for r in cells[2:]]
    out = ["<table><tr>" + "".join(f"<th>{inline(c, base)}</th>" for c in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{inline(c, base)}</td>" for c in r) + "</tr>" for r in body]
    return "".join(out) + "</table>"


def convert(markdown: str, base: Path) -> str:
    """The guide's Markdown as one HTML document."""
    body: list[str] = []
    lines = markdown.splitlines()
    i, title = 0, "CACH for QGIS"
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            body.append(
                "<pre><code>" + html.escape("\n".join(lines[i + 1 : end])) + "</code></pre>"
            )
            i = end + 1
        elif m := re.match(r"(#{1,6})\s+(.*)", line):
            level, text = len(m.group(1)), m.group(2)
            title = text if level == 1 else title
            body.append(f'<h{level} id="{slug(text)}">{inline(text, base)}</h{level}>')
            i += 1
        elif line.startswith("|"):
            end = i
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            body.append(_table(lines[i:end], base))
            i = end
        elif re.match(r"[*-] ", line):
            items: list[str] = []
            while i < len(lines) and (re.match(r"[*-] ", lines[i]) or lines[i].startswith("  ")):
                if re.match(r"[*-] ", lines[i]):
                    items.append(lines[i][2:])
                else:
                    items[-1] += " " + lines[i].strip()
                i += 1
            body.append("<ul>" + "".join(f"<li>{inline(t, base)}</li>" for t in items) + "</ul>")
        elif not line.strip():
            i += 1
        else:
            para = [line]
            i += 1
            while (
                i < len(lines) and lines[i].strip() and not re.match(r"(#|\||```|[*-] )", lines[i])
            ):
                para.append(lines[i])
                i += 1
            body.append(f"<p>{inline(' '.join(para), base)}</p>")
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the HTML is stale")
    args = parser.parse_args(argv)
    text = convert(SOURCE.read_text(encoding="utf-8"), SOURCE.parent)
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is not up to date: run scripts/user_guide_html.py", file=sys.stderr)
            return 1
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET} ({len(text) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
