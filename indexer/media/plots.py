"""Plots for reports and the web page, as self-contained SVG text made with matplotlib (the ``plots``
extra): histograms with a threshold marked, per-class bars, a confusion matrix of the most confused
classes. Each function takes small precomputed data (bin counts, rates, a count matrix), so what a
report stores to redraw a plot later is a few hundred numbers, whatever the collection's size.
Without matplotlib every function returns None and the report says how to get the plots."""

from __future__ import annotations

import io
from typing import Any, Optional, Sequence

import numpy as np

INSTALL_HINT = "plots need matplotlib: pip install 'indexer[plots]'"
MAX_BARS = 40  # classes shown in a per-class bar chart (the lowest first)
MAX_CONFUSED = 12  # classes shown in a confusion matrix (those in the largest confusions)


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in a server's threads

    return Figure(figsize=(width, height), dpi=96, layout="constrained")


def _svg(figure: Any) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "indexer"}):  # text as text; stable ids
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]  # no XML prolog: the SVG sits inside an HTML page
    start, end = text.find("<metadata>"), text.find("</metadata>")
    return text[:start] + text[end + len("</metadata>"):] if 0 <= start < end else text


def histogram_data(values: np.ndarray, bins: int = 50, low: Optional[float] = None,
                   high: Optional[float] = None) -> dict[str, list[float]]:
    """Bin edges and counts of the finite ``values`` (what ``histogram`` draws, and what is stored)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return {"edges": [], "counts": []}
    lo = float(finite.min()) if low is None else low
    hi = float(finite.max()) if high is None else high
    counts, edges = np.histogram(finite, bins=bins, range=(lo, hi if hi > lo else lo + 1e-6))
    return {"edges": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]}


def histogram(data: dict[str, list[float]], title: str, xlabel: str, marker: Optional[float] = None,
              marker_label: str = "threshold", log: bool = False) -> Optional[str]:
    """A histogram from ``histogram_data``, with a vertical line at ``marker``."""
    if not available() or not data.get("counts"):
        return None
    edges, counts = np.asarray(data["edges"]), np.asarray(data["counts"])
    figure = _figure(6.4, 2.8)
    axes = figure.subplots()
    axes.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#4c72b0", edgecolor="white",
             linewidth=0.3)
    if log:
        axes.set_yscale("symlog")
    if marker is not None and np.isfinite(marker):
        axes.axvline(marker, color="#c44e52", linestyle="--", linewidth=1.5, label=f"{marker_label} {marker:.4g}")
        axes.legend(loc="upper center", frameon=False, fontsize=9)
    axes.set_title(title, fontsize=11)
    axes.set_xlabel(xlabel, fontsize=9)
    axes.set_ylabel("items", fontsize=9)
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(figure)


def class_bars(classes: Sequence[str], rates: Sequence[float], title: str, xlabel: str = "recall") -> Optional[str]:
    """Horizontal bars of a per-class rate, lowest first (at most ``MAX_BARS`` classes)."""
    if not available() or not len(classes):
        return None
    order = np.argsort(np.asarray(rates, dtype=float), kind="stable")[:MAX_BARS]
    shown = [classes[i] for i in order][::-1]
    values = [float(rates[i]) for i in order][::-1]
    figure = _figure(6.4, 0.6 + 0.22 * len(shown))
    axes = figure.subplots()
    axes.barh(range(len(shown)), values, color=["#c44e52" if v < 0.5 else "#4c72b0" for v in values])
    axes.set_yticks(range(len(shown)), shown, fontsize=8)
    axes.set_xlim(0, 1)
    axes.set_xlabel(xlabel, fontsize=9)
    more = f" (the {len(shown)} lowest of {len(classes)})" if len(classes) > len(shown) else ""
    axes.set_title(title + more, fontsize=11)
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(figure)


def confused_classes(matrix: np.ndarray, limit: int = MAX_CONFUSED) -> list[int]:
    """The classes of the largest off-diagonal counts, at most ``limit``, in the order first met."""
    off = np.array(matrix, dtype=np.int64, copy=True)
    np.fill_diagonal(off, 0)
    chosen: list[int] = []
    for flat in np.argsort(-off, axis=None, kind="stable"):
        if off.flat[flat] <= 0 or len(chosen) >= limit:
            break
        for c in divmod(int(flat), off.shape[1]):
            if c not in chosen and len(chosen) < limit:
                chosen.append(c)
    return chosen


def confusion(classes: Sequence[str], counts: Sequence[Sequence[int]], title: str, rows: str = "true",
              columns: str = "predicted") -> Optional[str]:
    """A heat map of a (small) confusion matrix, counts written in the cells."""
    if not available() or not len(classes):
        return None
    matrix = np.asarray(counts, dtype=float)
    side = 1.6 + 0.42 * len(classes)
    figure = _figure(side + 1.2, side)
    axes = figure.subplots()
    shown = axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(len(classes)), classes, fontsize=8)
    axes.set_xlabel(columns, fontsize=9)
    axes.set_ylabel(rows, fontsize=9)
    top = matrix.max() if matrix.size else 0
    for (r, c), value in np.ndenumerate(matrix):
        if value:
            axes.text(c, r, f"{int(value)}", ha="center", va="center", fontsize=7,
                      color="white" if value > 0.6 * top else "black")
    figure.colorbar(shown, ax=axes, shrink=0.7)
    axes.set_title(title, fontsize=11)
    return _svg(figure)
