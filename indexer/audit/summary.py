"""The one-screen summary of an audit, as lines of text (the CLI prints them)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .core import AuditResult
from .report import CSV_FILE, HTML_FILE, JSON_FILE, display_root, short_path


def summary_lines(result: AuditResult, report: Optional[Path] = None, top: int = 5) -> list[str]:
    """A one-screen summary: counts per finding type and the top few of the main ones."""
    root = display_root(result)
    def short(uri: str) -> str:
        return short_path(uri, root)

    counts = result.counts()
    duplicates = result.of_type("duplicate")
    lines = [f"audited {result.items} items in {len(result.labels)} labels ({result.label_source}"
             + (f"; splits {', '.join(result.splits)}" if result.splits else "") + f") in {result.seconds:.1f} s"]
    if result.unlabelled or result.unmatched:
        lines.append(f"  left out: {result.unlabelled} unlabelled items"
                     + (f", {result.unmatched} label rows naming no embedded item" if result.unmatched else ""))
    conflicts = sum(f.details["label_conflict"] for f in duplicates)
    leaks = sum(f.details["split_leak"] for f in duplicates)
    exact = sum(f.details["kind"] == "exact" for f in duplicates)
    lines += [
        f"  likely mislabels        {counts['mislabel']:>6}",
        f"  duplicate groups        {counts['duplicate']:>6}  ({exact} exact, {len(duplicates) - exact} near; "
        f"{conflicts} with differing labels, {leaks} across splits)",
        f"    near: cosine >= {result.near.get('threshold')}"
        + (f" (adaptive: 1 - {result.options.near_ratio} x median k-NN distance "
           f"{result.near.get('median_knn_distance')})" if result.near.get("adaptive") else "")
        + (f", hashes within {result.options.phash_distance} bits: {result.near.get('confirmed')} of "
           f"{result.near.get('candidates')} candidate pairs" if result.options.phash_distance is not None else ""),
        f"  outliers                {counts['outlier']:>6}",
        f"  confusable label pairs  {counts['confusable_labels']:>6}",
        f"  small classes           {counts['small_class']:>6}",
    ]
    near_items = sum(len(f.paths or []) for f in duplicates if f.details["kind"] == "near")
    if near_items > 0.1 * max(result.items, 1):
        lines.append(f"  hint: {near_items} items are near duplicates; if the model puts distinct pictures this "
                     f"close, lower --near-ratio (now {result.options.near_ratio}) or --phash-distance")
    mislabels = result.of_type("mislabel")[:top]
    if mislabels:
        lines.append("top mislabels (score, given -> suggested, path):")
        lines += [f"  {f.score:6.2f}  {f.details['given_label']} -> {f.details['suggested_label']}  {short(f.path or '')}"
                  for f in mislabels]
    if duplicates[:top]:
        lines.append("top duplicate groups:")
        for f in duplicates[:top]:
            flag = "labels differ" if f.details["label_conflict"] else "across splits" if f.details["split_leak"] else ""
            paths = f.paths or []
            lines.append(f"  {f.score:6.4f}  {f.details['kind']:<5} {len(paths)} items{'  [' + flag + ']' if flag else ''}"
                         f"  {short(paths[0]) if paths else ''}{' ...' if len(paths) > 1 else ''}")
    outliers = result.of_type("outlier")[:3]
    if outliers:
        lines.append("top outliers:")
        lines += [f"  {f.score:6.2f}  {f.details['label']}  {short(f.path or '')}" for f in outliers]
    pairs = result.of_type("confusable_labels")[:3]
    if pairs:
        lines.append("confusable labels: " + "; ".join(f"{f.details['labels'][0]} ~ {f.details['labels'][1]} "
                                                       f"({f.score:.2f})" for f in pairs))
    small = result.of_type("small_class")[:5]
    if small:
        lines.append("small classes: " + ", ".join(f"{f.details['label']} ({f.details['items']})" for f in small))
    decided = {k: v for k, v in result.decided.items() if v}
    if decided:
        words = {"accept": "accepted", "reject": "rejected", "relabel": "relabelled", "drop": "dropped"}
        lines.append("decided earlier: " + ", ".join(f"{v} {words[k]}" for k, v in decided.items())
                     + (" (rejected findings are not shown again)" if decided.get("reject") else ""))
    if report is not None:
        lines.append(f"report: {report / HTML_FILE} (every finding in {CSV_FILE} and {JSON_FILE} beside it)")
    return lines
