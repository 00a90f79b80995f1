"""How the audit's label probabilities are mixed, chosen on development sets only.

Runs the audit on development audit sets (``scripts/audit_sets.py`` with seeds the benchmark never
uses) for a grid of (neighbour weight, probe weight) and prints the true flips among the top K for
each labels file, and their mean. The defaults in ``AuditOptions`` were set from this, before any test
set was drawn; ``scripts/audit_vs_cleanlab.py`` then measures them on test sets.

    python scripts/audit_tune.py /tmp/audit-sets/dev-100 /tmp/audit-sets/dev-101
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from indexer import open_index
from indexer.audit import AuditOptions, audit
from indexer.audit.dataset import csv_labels

LABEL_FILES = ("random5", "random10", "colour5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", type=Path, nargs="+")
    parser.add_argument("--neighbour-weights", default="0,0.15,0.3,0.5")
    parser.add_argument("--probe-weights", default="0,0.35,0.5,0.7,0.85")
    args = parser.parse_args()
    grid = [(v, p) for v, p in itertools.product(*(map(float, a.split(",")) for a in
                                                  (args.neighbour_weights, args.probe_weights))) if v + p <= 1.0]
    datasets = []
    for folder in args.sets:
        truth = json.loads((folder / "truth.json").read_text())
        for name in LABEL_FILES:
            datasets.append((folder, name, set(truth["flips"][name])))
    print("neighbour_weight probe_weight " + " ".join(f"{f.name}:{n}" for f, n, _ in datasets) + " mean")
    for vote, probe in grid:
        hits = []
        for folder, name, flips in datasets:
            with open_index(folder / "index") as index:
                result = audit(index.context, csv_labels(index.context, folder / f"labels-{name}.csv"),
                               AuditOptions(neighbour_weight=vote, probe_weight=probe, phash_distance=None,
                                            near_threshold=1.0))
            order = [f.path for f in result.of_type("mislabel")]
            hits.append(sum(p in flips for p in order[:len(flips)]))
        print(f"{vote:.2f} {probe:.2f} " + " ".join(str(h) for h in hits) + f" {np.mean(hits):.1f}", flush=True)


if __name__ == "__main__":
    main()
