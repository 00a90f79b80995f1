"""An audit's files: a self-contained HTML report, and CSV and JSON of every finding.

The HTML page needs nothing but itself: thumbnails are small JPEG data URIs made from the original
files (a placeholder where a file cannot be read), styles and the few lines of table-sorting script
are inline, and nothing is fetched from the network. Each section shows at most ``max_rows`` findings;
the CSV and JSON files hold them all. Files are written under a temporary name and renamed into place.
"""

from __future__ import annotations

import csv
import html
import json
import os
import time
from pathlib import Path
from typing import Any, Optional

from ..errors import IndexerError, QueryError
from ..media.archives import MEMBER_SEPARATOR, iter_archive_contents, split_member_uri
from ..config import DEFAULT_MAX_FILE_SIZE
from ..media.sources import read_bytes
from ..media.thumbnails import THUMBNAIL_PX, thumbnail_data_uri
from ..query.output import spreadsheet_safe
from ..store.files import atomic_write
from .core import FINDING_TYPES, AuditResult, Finding

HTML_FILE, CSV_FILE, JSON_FILE, SUMMARY_FILE = "audit.html", "findings.csv", "findings.json", "summary.json"
CSV_COLUMNS = ("id", "type", "rank", "score", "path", "paths", "given_label", "suggested_label", "details")
GROUP_THUMBNAILS = 8  # thumbnails shown per duplicate group

TITLES = {
    "mislabel": "Likely mislabels",
    "duplicate": "Duplicates",
    "outlier": "Outliers",
    "confusable_labels": "Confusable labels",
    "small_class": "Small classes",
}
EXPLANATIONS = {
    "mislabel": "The given label is unlikely and another label likely (confident learning: each label's threshold "
                "is its class's average self-confidence). Score: ln(p suggested / p given).",
    "duplicate": "Exact (same content) and near duplicates (cosine at or above the threshold). Groups whose labels "
                 "differ, then groups that straddle splits, come first. Score: the weakest similarity in the group.",
    "outlier": "Unlike the rest of their class: the mean cosine distance to the nearest other pictures (k-NN), in "
               "robust standard deviations above the class's median (the score). The distance to the class "
               "centroid is shown too.",
    "confusable_labels": "Label pairs whose prompt embeddings are so close, or that the model swaps so often on this "
                         "data, that it cannot tell them apart. Score: cosine of the prompt embeddings.",
    "small_class": "Classes with too few items to learn or to audit. Score: 1 - items / minimum.",
}


def _near_text(result: AuditResult) -> str:
    near = result.near or {}
    cosine = f"cosine &ge; {near.get('threshold', result.options.near_threshold)}"
    if near.get("adaptive"):
        cosine += (f" (1 &minus; {result.options.near_ratio} &times; the median k-NN distance "
                   f"{near.get('median_knn_distance')})")
    if result.options.phash_distance is not None:
        cosine += f" and perceptual hashes within {result.options.phash_distance} bits"
    return cosine


# ----------------------------------------------------------------------------- CSV and JSON


def finding_rows(result: AuditResult) -> list[dict[str, Any]]:
    """Every finding as a flat dict, with its rank within its type (1 = most likely)."""
    rows = []
    for kind in FINDING_TYPES:
        for rank, finding in enumerate(result.of_type(kind), start=1):
            rows.append({"rank": rank, **finding.to_dict()})
    return rows


def write_json(result: AuditResult, path: Path) -> None:
    """The findings as one JSON array (what ``audit --json`` prints)."""
    data = [f.to_dict() for f in result.findings]
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8"))


def read_findings(folder: Path) -> list[dict]:
    """The findings a stored audit wrote (``findings.json`` in ``folder``)."""
    path = folder / JSON_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QueryError(f"no audit findings at {path}; run `indexer audit --index INDEX` first") from None
    except (OSError, ValueError) as exc:
        raise QueryError(f"cannot read the audit findings {path}: {exc}") from None
    if not isinstance(data, list):
        raise QueryError(f"{path} is not a list of findings")
    return data


def write_csv(result: AuditResult, path: Path) -> None:
    """One row per finding: type, rank, score, path or paths (a JSON array), labels, other details as JSON."""
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_COLUMNS)
            for row in finding_rows(result):
                details = {k: v for k, v in row.items() if k not in CSV_COLUMNS}
                writer.writerow([spreadsheet_safe(cell) for cell in (
                    row.get("id", ""), row["type"], row["rank"], row["score"], row.get("path", ""),
                    json.dumps(row["paths"], ensure_ascii=False) if "paths" in row else "",
                    row.get("given_label", ""), row.get("suggested_label", ""), json.dumps(details, ensure_ascii=False))])
    atomic_write(path, write)


def write_report(result: AuditResult, folder: Path, max_rows: int = 500, thumbnails: bool = True,
                 title: str = "Dataset audit") -> dict[str, Path]:
    """Writes the HTML report, findings.csv, findings.json and summary.json into ``folder``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IndexerError(f"cannot create report folder {folder}: {exc.strerror}") from None
    paths = {"html": folder / HTML_FILE, "csv": folder / CSV_FILE, "json": folder / JSON_FILE,
             "summary": folder / SUMMARY_FILE}
    write_json(result, paths["json"])
    write_csv(result, paths["csv"])
    summary = json.dumps(result.summary(), indent=1, ensure_ascii=False, default=str)
    atomic_write(paths["summary"], lambda tmp: tmp.write_text(summary, encoding="utf-8"))
    page = render_html(result, max_rows=max_rows, thumbnails=thumbnails, title=title)
    atomic_write(paths["html"], lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return paths


# ----------------------------------------------------------------------------- HTML


def thumbnail_uri(uri: str, size: int = THUMBNAIL_PX) -> Optional[str]:
    """A small JPEG data URI of the image file at ``uri``; None when it cannot be read."""
    try:
        data = read_bytes(uri, max_bytes=DEFAULT_MAX_FILE_SIZE)
    except IndexerError:
        return None
    return thumbnail_data_uri(data, size)


def _container(uri: str) -> Optional[str]:
    return split_member_uri(uri)[0]


class _Thumbnails:
    """Thumbnails by uri; archive members are read together, one pass over each archive."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.cache: dict[str, Optional[str]] = {}

    def prefetch(self, uris: list[str]) -> None:
        members: dict[str, set[str]] = {}
        for uri in uris:
            container = _container(uri)
            if container and uri not in self.cache:
                members.setdefault(container, set()).add(uri[len(container) + len(MEMBER_SEPARATOR):])
        for container, wanted in members.items():
            for member, data in iter_archive_contents(container, wanted, DEFAULT_MAX_FILE_SIZE):
                uri = container + MEMBER_SEPARATOR + member
                self.cache[uri] = None if isinstance(data, IndexerError) else thumbnail_data_uri(data)

    def img(self, uri: str) -> str:
        data = None
        if self.enabled:
            if uri not in self.cache:
                self.cache[uri] = thumbnail_uri(uri) if _container(uri) is None else None
            data = self.cache[uri]
        if data is None:
            return f'<span class="ph" title="{_e(uri)}">no preview</span>'
        return f'<img src="{data}" alt="" title="{_e(uri)}" width="{THUMBNAIL_PX}" height="{THUMBNAIL_PX}">'


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def display_root(result: AuditResult) -> Optional[str]:
    """The folder that paths are shown relative to: the labels' root, else the findings' common folder."""
    if result.root:
        return result.root
    folders = {os.path.dirname(p) for f in result.findings for p in ([f.path] if f.path else []) + (f.paths or [])}
    try:
        return os.path.commonpath(list(folders)) if folders else None
    except ValueError:  # relative and absolute paths mixed
        return None


def short_path(uri: str, root: Optional[str]) -> str:
    """``uri`` relative to ``root`` when below it."""
    if root and uri.startswith(root.rstrip(os.sep) + os.sep):
        return uri[len(root.rstrip(os.sep)) + 1:]
    return uri


def _link(uri: str, root: Optional[str]) -> str:
    text = _e(short_path(uri, root))
    if os.path.isabs(uri) and "::" not in uri:
        return f'<a href="{_e(Path(uri).as_uri())}">{text}</a>'
    return text


def _num(value: float, digits: int = 4) -> str:
    return f'<td class="n" data-sort="{value}">{value:.{digits}f}</td>'


def _probability(value: float) -> str:
    return f'<td class="n" data-sort="{value}">{value:.3g}</td>'


def _figures(paths: list[str], root: Optional[str], thumbs: _Thumbnails, notes: Optional[list[str]] = None) -> str:
    """Thumbnails of a group, each captioned with its path (and its note: label, split)."""
    notes = notes or [""] * len(paths)
    shown = "".join(f"<figure>{thumbs.img(p)}<figcaption>{_link(p, root)}{'<br>' + note if note else ''}"
                    f"</figcaption></figure>" for p, note in list(zip(paths, notes))[:GROUP_THUMBNAILS])
    more = f'<p class="more">and {len(paths) - GROUP_THUMBNAILS} more</p>' if len(paths) > GROUP_THUMBNAILS else ""
    return shown + more


def _rows(kind: str, findings: list[Finding], root: Optional[str], thumbs: _Thumbnails) -> tuple[list[str], list[str]]:
    """(header cells, body rows) of one section's table."""
    body = []
    if kind == "mislabel":
        head = ["#:n", "image", "path", "given", "suggested", "score:n", "p given:n", "p suggested:n", "split"]
        for rank, f in enumerate(findings, 1):
            d = f.details
            body.append(f'<td class="n">{rank}</td><td>{thumbs.img(f.path or "")}</td><td>{_link(f.path or "", root)}'
                        f'</td><td>{_e(d["given_label"])}</td><td><b>{_e(d["suggested_label"])}</b></td>'
                        f'{_num(f.score, 2)}{_probability(d["given_probability"])}{_probability(d["suggested_probability"])}'
                        f'<td>{_e(d.get("split") or "")}</td>')
    elif kind == "duplicate":
        head = ["#:n", "kind", "score:n", "items:n", "labels", "splits", "images"]
        for rank, f in enumerate(findings, 1):
            d, paths = f.details, f.paths or []
            flags = (' <span class="bad">labels differ</span>' if d["label_conflict"] else "") + \
                    (' <span class="bad">across splits</span>' if d["split_leak"] else "")
            notes = [_e(label) + (" · " + _e(split) if split else "") for label, split in zip(d["labels"], d["splits"])]
            sort_key = f'{int(d["label_conflict"])}{int(d["split_leak"])}'
            body.append(f'<td class="n">{rank}</td><td data-sort="{sort_key}">{_e(d["kind"])}{flags}</td>'
                        f'{_num(f.score, 6)}<td class="n">{len(paths)}</td><td>{_e(", ".join(sorted(set(d["labels"]))))}'
                        f'</td><td>{_e(", ".join(sorted({s for s in d["splits"] if s})))}</td>'
                        f'<td class="group">{_figures(paths, root, thumbs, notes)}</td>')
    elif kind == "outlier":
        head = ["#:n", "image", "path", "label", "score:n", "k-NN distance:n", "class median:n",
                "centroid distance:n", "split", "also a mislabel"]
        for rank, f in enumerate(findings, 1):
            d = f.details
            body.append(f'<td class="n">{rank}</td><td>{thumbs.img(f.path or "")}</td><td>{_link(f.path or "", root)}'
                        f'</td><td>{_e(d["label"])}</td>{_num(f.score, 2)}{_num(d["knn_distance"])}'
                        f'{_num(d["class_median_knn_distance"])}{_num(d["centroid_distance"])}'
                        f'<td>{_e(d.get("split") or "")}</td><td>{"yes" if d.get("also_mislabel") else ""}</td>')
    elif kind == "confusable_labels":
        head = ["#:n", "label", "label", "prompt cosine:n", "swapped items:n", "confusion rate:n", "swapped examples"]
        for rank, f in enumerate(findings, 1):
            d = f.details
            body.append(f'<td class="n">{rank}</td><td>{_e(d["labels"][0])}</td><td>{_e(d["labels"][1])}</td>'
                        f'{_num(f.score)}<td class="n">{d["swapped_items"]}</td>{_num(d["confusion_rate"], 3)}'
                        f'<td class="group">{_figures(f.paths or [], root, thumbs)}</td>')
    else:
        head = ["#:n", "label", "items:n", "score:n", "images"]
        for rank, f in enumerate(findings, 1):
            body.append(f'<td class="n">{rank}</td><td>{_e(f.details["label"])}</td>'
                        f'<td class="n">{f.details["items"]}</td>{_num(f.score, 3)}'
                        f'<td class="group">{_figures(f.paths or [], root, thumbs)}</td>')
    # Every finding's id (what `indexer audit decide ID ...` takes) and the decision made on it, if any.
    head = head + ["id", "decision"]
    body = [row + f'<td class="path">{_e(f.id or "")}</td><td>{_e(_decision_text(f))}</td>'
            for row, f in zip(body, findings)]
    return head, body


def _decision_text(finding: Finding) -> str:
    decision = finding.decision or {}
    return (decision.get("action") or "") + (f" {decision['label']}" if decision.get("label") else "")


_STYLE = """figure.plot { margin: 1em 0; max-width: 100%; overflow-x: auto; }
figure.plot svg { max-width: 100%; height: auto; }

body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 24px 48px;color:#1d2330}
h1{margin:20px 0 4px}h2{margin:32px 0 4px;border-bottom:2px solid #dde3ee;padding-bottom:4px}
.meta{color:#5a6477}nav a{margin-right:14px}.count{color:#5a6477;font-weight:normal}
table{border-collapse:collapse;margin-top:8px;width:100%}th,td{padding:4px 8px;border-bottom:1px solid #e6e9f0;
vertical-align:middle;text-align:left}th{background:#f3f5f9;cursor:pointer;user-select:none;position:sticky;top:0}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.n{text-align:right;font-variant-numeric:tabular-nums}tr:hover td{background:#fafbfd}
img{display:block;border-radius:3px;object-fit:contain;background:#eee}
.ph{display:inline-block;width:96px;height:96px;line-height:96px;text-align:center;background:#eceff4;color:#8a93a5;
font-size:11px;border-radius:3px}figure{display:inline-block;margin:2px 6px 2px 0;vertical-align:top;max-width:150px}
figcaption{font-size:11px;color:#5a6477;word-break:break-all}.bad{background:#ffe3e0;color:#a3261a;
border-radius:3px;padding:0 4px;font-size:12px;white-space:nowrap}.more{color:#5a6477;font-style:italic}
td a{color:#1f4fbf;text-decoration:none;word-break:break-all}p.none{color:#5a6477}
"""

# Sorting: click a header (again to reverse). "#sort=TABLE_ID:COLUMN:asc|desc" in the address sorts on load.
_SCRIPT = """
(function () {
  function key(cell, numeric) {
    var v = cell.getAttribute('data-sort'); if (v === null) { v = cell.textContent.trim(); }
    if (numeric) { var f = parseFloat(v); return isNaN(f) ? -Infinity : f; } return v.toLowerCase();
  }
  function sortTable(table, column, direction) {
    var body = table.tBodies[0], heads = table.tHead.rows[0].cells;
    var numeric = heads[column].getAttribute('data-type') === 'n';
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[column], numeric), y = key(b.cells[column], numeric);
      return (x < y ? -1 : x > y ? 1 : 0) * direction;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    for (var i = 0; i < heads.length; i++) {
      heads[i].setAttribute('aria-sort', i === column ? (direction > 0 ? 'ascending' : 'descending') : 'none');
    }
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
      th.addEventListener('click', function () {
        sortTable(table, column, th.getAttribute('aria-sort') === 'ascending' ? -1 : 1);
      });
    });
  });
  var wanted = /sort=([\\w-]+):(\\d+):(asc|desc)/.exec(window.location.hash);
  if (wanted && document.getElementById(wanted[1])) {
    sortTable(document.getElementById(wanted[1]), parseInt(wanted[2], 10), wanted[3] === 'asc' ? 1 : -1);
  }
  document.body.setAttribute('data-sortable', 'ready');
})();
"""


PLOT_NAMES = ("nearest", "confidence", "margins", "agreement", "confusion")


def plot_svgs(plots: dict[str, Any], names: tuple[str, ...] = PLOT_NAMES) -> dict[str, Optional[str]]:
    """The audit's plots as SVG text, drawn from its stored plot data (``AuditResult.plots``); None for
    a plot without data, or for all of them without matplotlib."""
    from ..media import plots as draw

    out: dict[str, Optional[str]] = {}
    for name in names:
        data = plots.get(name) or {}
        if name == "nearest":
            out[name] = draw.histogram(data, "Nearest-neighbour similarity (each item's closest other picture)",
                                       "cosine similarity", data.get("marker"), "near-duplicate threshold", log=True)
        elif name == "confidence":
            out[name] = draw.histogram(data, "Probability of the given label", "probability",
                                       data.get("marker"), "median class threshold", log=True)
        elif name == "margins":
            out[name] = draw.histogram(data, "Mislabel scores of the flagged items", "ln(p suggested / p given)")
        elif name == "agreement":
            out[name] = draw.class_bars(data.get("classes", []), data.get("rates", []),
                                        "Per-class agreement: given label = most probable",
                                        "share of the class's items")
        elif name == "confusion":
            out[name] = draw.confusion(data.get("classes", []), data.get("counts", []),
                                       "Most confused: given (rows) x most probable",
                                       rows="given label", columns="most probable label")
    return out


def _plots_section(result: AuditResult) -> str:
    from ..media.plots import INSTALL_HINT, available

    if not available():
        return f'<section id="plots"><h2>Plots</h2><p class="none">{_e(INSTALL_HINT)}</p></section>'
    figures = [f'<figure class="plot" id="plot-{name}">{svg}</figure>'
               for name, svg in plot_svgs(result.plots).items() if svg]
    return '<section id="plots"><h2>Plots</h2>' + "".join(figures) + "</section>"


def render_html(result: AuditResult, max_rows: int = 500, thumbnails: bool = True,
                title: str = "Dataset audit") -> str:
    """The report as one HTML string: summary, then one sortable table per finding type."""
    thumbs = _Thumbnails(thumbnails)
    root = display_root(result)
    counts = result.counts()
    nav = " ".join(f'<a href="#{kind}">{TITLES[kind]} <span class="count">({counts[kind]})</span></a>'
                   for kind in FINDING_TYPES) + ' <a href="#plots">Plots</a>'
    sections = []
    for kind in FINDING_TYPES:
        findings = result.of_type(kind)
        shown = findings[:max_rows]
        parts = [f'<section id="{kind}"><h2>{TITLES[kind]} <span class="count">({len(findings)})</span></h2>',
                 f"<p>{_e(EXPLANATIONS[kind])}</p>"]
        if not findings:
            parts.append('<p class="none">None found.</p>')
        else:
            if thumbnails:
                thumbs.prefetch([p for f in shown
                                 for p in ([f.path] if f.path else []) + (f.paths or [])[:GROUP_THUMBNAILS]])
            head, body = _rows(kind, shown, root, thumbs)
            cells = "".join(f'<th data-type="n">{_e(h[:-2])}</th>' if h.endswith(":n") else f"<th>{_e(h)}</th>"
                            for h in head)
            rows = "".join(f"<tr>{row}</tr>" for row in body)
            parts.append(f'<table class="sortable" id="t-{kind}"><thead><tr>{cells}</tr></thead>'
                         f"<tbody>{rows}</tbody></table>")
            if len(findings) > len(shown):
                parts.append(f'<p class="more">Showing the first {len(shown)} of {len(findings)}; all of them are in '
                             f"{CSV_FILE} and {JSON_FILE}.</p>")
        parts.append("</section>")
        sections.append("".join(parts))
    options = result.options
    meta = (f"{result.items} items, {len(result.labels)} labels, labels from {_e(result.label_source)}"
            + (f"; splits: {_e(', '.join(result.splits))}" if result.splits else "")
            + (f"; {result.unlabelled} unlabelled items left out" if result.unlabelled else "")
            + f". Templates {_e(options.templates)}, neighbour weight {options.neighbour_weight}, near-duplicate "
              f"{_near_text(result)}, outlier z &ge; {options.outlier_z}. "
            + f"Made {time.strftime('%Y-%m-%d %H:%M')} in {result.seconds:.1f} s."
            + (f" Paths are shown below {_e(root)}." if root else ""))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>'
            f'<body data-sortable="no-script"><h1>{_e(title)}</h1><p class="meta">{meta}</p><nav>{nav}</nav>'
            + "".join(sections) + _plots_section(result) + f"<script>{_SCRIPT}</script></body></html>\n")
