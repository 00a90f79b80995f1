"""``indexer eval --report DIR``: the evaluation as a self-contained HTML page (eval.html: figures,
per-class recall and the most confused classes as plots, and the tables) and its JSON (eval.json)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from ..media import plots
from ..store.files import atomic_write
from .evaluate import EvalReport

HTML_FILE, JSON_FILE = "eval.html", "eval.json"
_STYLE = ("body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}"
          "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
          "td.n{text-align:right}figure{margin:1em 0}figure svg{max-width:100%;height:auto}.none{color:#777}")


def _e(text: object) -> str:
    return html.escape(str(text))


def render_eval_html(report: EvalReport, title: str = "Zero-shot evaluation") -> str:
    figures = [("images", report.images), ("classes", report.classes), ("templates", report.templates),
               ("top-1", f"{report.top1:.1%}"), ("top-5", f"{report.top5:.1%}"),
               ("mean per-class recall", f"{report.mean_per_class_recall:.1%}")]
    if report.unreadable:
        figures.append(("unreadable pictures", report.unreadable))
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{_e(title)}</h1><table>"
             + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in figures) + "</table>"]
    if report.gzsl:
        parts.append("<h2>Generalized zero-shot</h2><pre>" + _e(json.dumps(report.gzsl, indent=1)) + "</pre>")
    parts.append("<h2>Plots</h2>")
    if not plots.available():
        parts.append(f"<p class='none'>{_e(plots.INSTALL_HINT)}</p>")
    else:
        rows = report.per_class
        bars = plots.class_bars([r["class"] for r in rows], [r["recall"] for r in rows], "Per-class recall")
        parts.append(f"<figure id='plot-recall'>{bars}</figure>" if bars else "")
        if report.confusion_matrix is not None:
            chosen = plots.confused_classes(report.confusion_matrix)
            if chosen:
                svg = plots.confusion([report.class_names[i] for i in chosen],
                                      report.confusion_matrix[np.ix_(chosen, chosen)].tolist(),
                                      "Most confused: true (rows) x predicted")
                parts.append(f"<figure id='plot-confusion'>{svg}</figure>")
    parts.append("<h2>Per class</h2><table><tr><th>class</th><th>images</th><th>recall</th>"
                 "<th>most confused with</th></tr>" + "".join(
                     f"<tr><td>{_e(r['class'])}</td><td class='n'>{r['images']}</td><td class='n'>{r['recall']:.1%}</td>"
                     f"<td>{_e(r['most_confused_with'] or '')}</td></tr>" for r in report.per_class) + "</table>")
    if report.confusions:
        keys = list(report.confusions[0])
        parts.append("<h2>Costliest confusions</h2><table><tr>" + "".join(f"<th>{_e(k)}</th>" for k in keys)
                     + "</tr>" + "".join("<tr>" + "".join(f"<td>{_e(c.get(k))}</td>" for k in keys) + "</tr>"
                                         for c in report.confusions) + "</table>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_eval_report(report: EvalReport, folder: Path) -> Path:
    """Writes eval.html and eval.json into ``folder`` (created); returns the HTML file's path."""
    folder = Path(folder).expanduser()
    page = render_eval_html(report)
    data = json.dumps(report.to_dict(), indent=1, ensure_ascii=False)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from ..errors import QueryError

        raise QueryError(f"cannot create {folder}: {exc.strerror or exc}", param="report") from None
    atomic_write(folder / JSON_FILE, lambda tmp: tmp.write_text(data, encoding="utf-8"))
    atomic_write(folder / HTML_FILE, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return folder / HTML_FILE
