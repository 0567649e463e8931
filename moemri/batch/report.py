"""batch-report.tsv (one row per volume) and batch-report.html (the same with thumbnails)."""
from __future__ import annotations

import html
from pathlib import Path

from ..methods.base import NOISE_LEVEL_OPTION, SPACING_OPTION
from . import atomic
from .worker import thumbnail_stem

COLUMNS = ("volume", "status", "seconds", "noise_level_percent", "expert", "worker", "worker_deaths", "peak_rss_mb", "reason", "output")
REPORT_DIR = "batch-report"


def row(record: dict) -> dict:
    return {
        "volume": record["key"],
        "status": record["status"],
        "seconds": record.get("seconds", record.get("method_seconds", "")) if record["status"] != "skipped" else "",
        "noise_level_percent": record.get("noise_level_percent", ""),
        "expert": record.get("selected_expert") or record.get("main_expert") or "",
        "worker": record.get("worker", ""),
        "worker_deaths": record.get("worker_deaths", 0),
        "peak_rss_mb": record.get("peak_rss_mb", ""),
        "reason": record.get("reason", ""),
        "output": record.get("output", ""),
    }


def _cell(value) -> str:
    return str(value).replace("\t", " ").replace("\n", " ")


def write_tsv(records: list[dict], path: Path) -> Path:
    lines = ["\t".join(COLUMNS)] + ["\t".join(_cell(row(r)[c]) for c in COLUMNS) for r in records]
    return atomic.write_text(path, "\n".join(lines) + "\n")


def counts(records: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out


def write_html(records: list[dict], path: Path, title: str) -> Path:
    path = Path(path)
    thumbs = path.parent / REPORT_DIR
    head = "".join(f"<th>{c}</th>" for c in ("volume", "status", "seconds", "noise %", "expert", "before", "after", "expert map", "reason"))
    body = []
    for r in records:
        cells = row(r)
        stem = thumbnail_stem(r["key"])
        pictures = []
        for name in ("before", "after", "experts"):
            picture = thumbs / f"{stem}_{name}.png"
            pictures.append(f'<img src="{REPORT_DIR}/{html.escape(picture.name)}" alt="{name}">' if picture.is_file() else "")
        values = [cells["volume"], cells["status"], cells["seconds"], cells[NOISE_LEVEL_OPTION], cells["expert"]]
        body.append(
            f'<tr class="{html.escape(cells["status"])}">'
            + "".join(f"<td>{html.escape(str(v))}</td>" for v in values)
            + "".join(f"<td>{p}</td>" for p in pictures)
            + f"<td>{html.escape(str(cells['reason']))}</td></tr>"
        )
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts(records).items()))
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif}} td,th{{padding:4px 8px;border-bottom:1px solid #ddd;vertical-align:middle}}
tr.failed td{{background:#fde8e8}} tr.skipped td{{color:#666}} img{{height:120px}}</style></head>
<body><h1>{html.escape(title)}</h1><p>{html.escape(summary)}; the table is batch-report.tsv.</p>
<table><tr>{head}</tr>
{chr(10).join(body)}
</table></body></html>
"""
    return atomic.write_text(path, page)
