"""Reports as data: a title and a list of blocks, rendered to Markdown and to one self-contained HTML page.

:class:`Report` holds headings, paragraphs, bullet lists, tables and figures (PNG files beside the
report). ``to_markdown`` links the figures; ``to_html`` embeds them as base64 PNG so the HTML file can
be sent on its own. Nothing here knows what a report is about: the studies fill in the blocks.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landscape.io.atomic import atomic_write_text

_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}"
    "table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}"
    "th,td{border:1px solid #bbb;padding:.25rem .5rem;text-align:right}"
    "th:first-child,td:first-child{text-align:left}"
    "img{max-width:100%}figure{margin:1rem 0}figcaption{font-size:.9rem;color:#444}"
    "code,pre{background:#f4f4f4}"
)


@dataclass
class Report:
    """An ordered list of blocks; figures are paths relative to the report's folder."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(("bullets", list(items)))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(("table", ([str(h) for h in header], [[str(c) for c in r] for r in rows])))

    def figure(self, relpath: str, caption: str) -> None:
        self.blocks.append(("figure", (relpath, caption)))

    def to_markdown(self) -> str:
        """GitHub-flavoured Markdown; figures as relative image links."""
        out = [f"# {self.title}", ""]
        for kind, body in self.blocks:
            if kind == "heading":
                out += [f"{'#' * body[0]} {body[1]}", ""]
            elif kind == "paragraph":
                out += [body, ""]
            elif kind == "bullets":
                out += [f"- {item}" for item in body] + [""]
            elif kind == "table":
                header, rows = body
                out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
                out.append("|" + "|".join("---" for _ in header) + "|")
                out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
                out.append("")
            elif kind == "figure":
                out += [f"![{body[1]}]({body[0]})", "", f"*{body[1]}*", ""]
        return "\n".join(out)

    def to_html(self, base: str | Path) -> str:
        """One HTML page with every figure embedded (``base``: the folder the figure paths start from)."""
        esc = html.escape
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{esc(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{esc(self.title)}</h1>",
        ]
        for kind, body in self.blocks:
            if kind == "heading":
                out.append(f"<h{body[0]}>{esc(body[1])}</h{body[0]}>")
            elif kind == "paragraph":
                out.append(f"<p>{esc(body)}</p>")
            elif kind == "bullets":
                out.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in body) + "</ul>")
            elif kind == "table":
                header, rows = body
                out.append(
                    "<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>"
                )
                out.append(
                    "<tbody>"
                    + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
                    + "</tbody></table>"
                )
            elif kind == "figure":
                data = base64.b64encode((Path(base) / body[0]).read_bytes()).decode("ascii")
                out.append(
                    f'<figure><img alt="{esc(body[1])}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{esc(body[1])}</figcaption></figure>"
                )
        out.append("</body></html>")
        return "\n".join(out) + "\n"

    def write(self, out_dir: str | Path, stem: str = "report") -> dict[str, Path]:
        """Write ``stem.md`` and the self-contained ``stem.html`` into ``out_dir``."""
        out = Path(out_dir)
        return {
            f"{stem}.md": atomic_write_text(out / f"{stem}.md", self.to_markdown() + "\n"),
            f"{stem}.html": atomic_write_text(out / f"{stem}.html", self.to_html(out)),
        }


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
