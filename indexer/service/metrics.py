"""Prometheus metrics in the text exposition format, kept by the service itself (no dependency).

``indexer_http_requests_total{route, method, status}`` counts answers; ``indexer_http_request_seconds``
is a histogram of their durations per route; ``indexer_query_seconds{stage}`` times the stages of a
search (embedding the query, searching the vectors).
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in pairs) + "}" if pairs else ""


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds


class Metrics:
    """Counters and histograms, by metric name and label pairs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[tuple, float]] = defaultdict(lambda: defaultdict(float))
        self._histograms: dict[str, dict[tuple, Histogram]] = defaultdict(dict)
        self._help: dict[str, str] = {}

    def count(self, name: str, help_text: str, value: float = 1.0, **labels: str) -> None:
        with self._lock:
            self._help[name] = help_text
            self._counters[name][tuple(sorted(labels.items()))] += value

    def observe(self, name: str, help_text: str, seconds: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._help[name] = help_text
            self._histograms[name].setdefault(key, Histogram()).observe(seconds)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, series in sorted(self._counters.items()):
                lines += [f"# HELP {name} {self._help[name]}", f"# TYPE {name} counter"]
                lines += [f"{name}{_labels(key)} {value:g}" for key, value in sorted(series.items())]
            for name, series in sorted(self._histograms.items()):
                lines += [f"# HELP {name} {self._help[name]}", f"# TYPE {name} histogram"]
                for key, histogram in sorted(series.items()):
                    running = 0
                    for bound, n in zip(BUCKETS, histogram.counts):
                        running += n
                        lines.append(f"{name}_bucket{_labels(key + (('le', f'{bound:g}'),))} {running}")
                    running += histogram.counts[-1]
                    lines.append(f"{name}_bucket{_labels(key + (('le', '+Inf'),))} {running}")
                    lines.append(f"{name}_sum{_labels(key)} {histogram.sum:.6f}")
                    lines.append(f"{name}_count{_labels(key)} {running}")
        return "\n".join(lines) + "\n"
