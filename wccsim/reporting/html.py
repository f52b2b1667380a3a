"""Self-contained HTML: inline CSS, PNG figures as base64 data URIs, no scripts, nothing fetched."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass

import pandas as pd

__all__ = ["FigureBlock", "render_html"]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1100px; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.82em; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
tr.best td { background: #e6f4e6; font-weight: bold; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
.meta { font-size: 0.85em; color: #555; } pre { font-size: 0.8em; background: #f7f7f7; padding: 8px;
       overflow-x: auto; }
"""


@dataclass(frozen=True)
class FigureBlock:
    """One figure: a stable id (also the PNG file suffix), title, caption, PNG bytes."""
    fig_id: str
    title: str
    caption: str
    png: bytes


def _img(block: FigureBlock) -> str:
    data = base64.b64encode(block.png).decode("ascii")
    return (f'<figure id="fig-{html.escape(block.fig_id)}"><img alt="{html.escape(block.title)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(block.caption)}</figcaption></figure>')


def _table(df: pd.DataFrame, row_class: pd.Series | None = None, table_id: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for i, (_, r) in enumerate(df.iterrows()):
        cls = f' class="{row_class.iloc[i]}"' if row_class is not None and row_class.iloc[i] else ""
        cells = "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r)
        rows.append(f"<tr{cls}>{cells}</tr>")
    tid = f' id="{table_id}"' if table_id else ""
    return f"<table{tid}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.4e}"
    return str(v)


def render_html(title: str, meta_lines: list[str], sections: list[tuple[str, list]]) -> str:
    """Assemble the page. Each section is (heading, items); an item is a FigureBlock, a (DataFrame,
    row classes or None, table id) triple, a ``("text", str)`` paragraph or a ``("json", obj, title)``
    block (collapsed, HTML ``<details>``)."""
    body = [f"<h1>{html.escape(title)}</h1>",
            "".join(f'<p class="meta">{html.escape(line)}</p>' for line in meta_lines)]
    for heading, items in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        for item in items:
            body.append(_item(item))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _item(item) -> str:
    if isinstance(item, FigureBlock):
        return _img(item)
    if isinstance(item[0], str) and item[0] == "text":
        return f"<p>{html.escape(item[1])}</p>"
    if isinstance(item[0], str) and item[0] == "json":
        return (f"<details><summary>{html.escape(item[2])}</summary>"
                f"<pre>{html.escape(json.dumps(item[1], indent=2, sort_keys=True))}</pre></details>")
    df, classes, table_id = item
    return _table(df, classes, table_id)
