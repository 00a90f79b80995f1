"""`indexer audit` (defaults) against cleanlab's Datalab, paired in one run on the same stored embeddings.

For each audit set (``scripts/audit_sets.py`` draws them) the pictures are ingested once with the
bundled ``tiny-shapes`` model; then for each of its labels files (5 % and 10 % random flips, 5 % flips to
another shape of the same colour) ``indexer audit`` runs with its defaults, and cleanlab's Datalab runs
in its own virtual environment (``scripts/cleanlab_runner.py``: 5-fold cross-validated logistic
regression probabilities on the stored embeddings, then ``find_issues(features=..., pred_probs=...)``).

Figures per set and labels file: true flips among the top K ranked mislabels (K = the number of flips),
the share of those whose suggested label is the true class, planted copies found (both pictures of a
planted pair in one duplicate group; for Datalab, each in the other's near-duplicate set), and items
flagged as duplicates that are in no planted pair.

    python scripts/audit_sets.py /tmp/audit-sets/test-0 --seed 0      # (draw the sets first)
    python scripts/audit_vs_cleanlab.py /tmp/audit-sets/test-0 /tmp/audit-sets/test-1 \\
        --cleanlab-python /tmp/cleanlab-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from indexer import open_index
from indexer.audit import AuditOptions, audit
from indexer.audit.dataset import csv_labels

LABEL_FILES = ("random5", "random10", "colour5")


def indexer_side(index, labels_file: Path, options: AuditOptions) -> dict:
    ctx = index.context
    started = time.time()
    dataset = csv_labels(ctx, labels_file)
    result = audit(ctx, dataset, options)
    seconds = time.time() - started
    mislabels = result.of_type("mislabel")
    groups = [f.paths for f in result.of_type("duplicate")]
    return {"order": [f.path for f in mislabels], "suggested": {f.path: f.details["suggested_label"] for f in mislabels},
            "groups": groups, "seconds": seconds, "near": result.near}


def cleanlab_side(index, labels_file: Path, python: str, strength: float = 1.0) -> dict:
    ctx = index.context
    given = {}
    for _, path, label, _ in __import__("indexer.query.labels", fromlist=["read_label_csv"]).read_label_csv(labels_file):
        given[path] = label
    labels = sorted(set(given.values()))
    paths, vectors = [], []
    for _, uris, block in ctx.catalog.items.iter_embedded(4096):
        for uri, vector in zip(uris, block):
            if uri in given:
                paths.append(uri)
                vectors.append(vector)
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "in.npz", Path(tmp) / "out.json"
        np.savez(data, features=np.stack(vectors).astype(np.float32),
                 labels=np.array([labels.index(given[p]) for p in paths], dtype=np.int64))
        started = time.time()
        subprocess.run([python, str(Path(__file__).with_name("cleanlab_runner.py")), str(data), str(out),
                        str(strength)], check=True)
        seconds = time.time() - started
        found = json.loads(out.read_text())
    return {"order": [paths[i] for i in found["label_order"]],
            "flagged": {paths[i] for i in found["label_flagged"]},
            "suggested": {paths[i]: labels[s] for i, s in enumerate(found["suggested"])},
            "near_flagged": {paths[int(i)] for i in found["near_flagged"]},
            "near_sets": {paths[int(i)]: {paths[j] for j in s} for i, s in found["near_sets"].items()},
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", type=Path, nargs="+", help="Audit set folders (scripts/audit_sets.py).")
    parser.add_argument("--cleanlab-python", default="/tmp/cleanlab-venv/bin/python",
                        help="Python of a virtual environment with cleanlab and scikit-learn.")
    parser.add_argument("--json", type=Path, help="Also write every figure to this file.")
    parser.add_argument("--previous-defaults", action="store_true",
                        help="The indexer side with the defaults before decisions existed (neighbour weight 0.5, "
                             "no probe, near-duplicate cosine 0.97, no hash), for the before/after figures.")
    parser.add_argument("--no-cleanlab", action="store_true", help="The indexer side only.")
    parser.add_argument("--cleanlab-c", type=float, default=1.0,
                        help="C of cleanlab's logistic regression (scikit-learn's default 1.0).")
    args = parser.parse_args()
    options = AuditOptions(neighbour_weight=0.5, probe_weight=0.0, near_threshold=0.97, phash_distance=None) \
        if args.previous_defaults else AuditOptions()
    rows, everything = [], []
    for folder in args.sets:
        truth = json.loads((folder / "truth.json").read_text())
        planted = truth["copies"]
        in_pairs = {p for pair in planted for p in pair["paths"]}
        started = time.time()
        with open_index(folder / "index", model="tiny-shapes") as index:
            index.ingest([folder / "pictures"])
        ingest_seconds = time.time() - started
        for name in LABEL_FILES:
            flips = set(truth["flips"][name])
            k = len(flips)
            with open_index(folder / "index") as index:
                mine = indexer_side(index, folder / f"labels-{name}.csv", options)
                theirs = cleanlab_side(index, folder / f"labels-{name}.csv", args.cleanlab_python, args.cleanlab_c) \
                    if not args.no_cleanlab else {"order": [], "flagged": set(), "suggested": {}, "near_flagged": set(),
                                                  "near_sets": {}, "seconds": 0.0}
            figures = {"set": folder.name, "labels": name, "flips": k, "ingest_seconds": round(ingest_seconds, 2)}
            for side, found in (("indexer", mine), ("cleanlab", theirs)):
                top = found["order"][:k]
                hits = [p for p in top if p in flips]
                right = sum(found["suggested"].get(p) == truth["truth"][p] for p in hits)
                figures[f"{side}_top_k"] = len(hits)
                figures[f"{side}_suggestion_right"] = right
                figures[f"{side}_seconds"] = round(found["seconds"], 2)
            groups = [set(g) for g in mine["groups"]]
            figures["indexer_copies_found"] = sum(any(set(p["paths"]) <= g for g in groups) for p in planted)
            figures["indexer_unplanted_flagged"] = len(set().union(*groups) - in_pairs) if groups else 0
            figures["indexer_flagged_mislabels"] = len(mine["order"])
            figures["indexer_near"] = mine["near"]
            sets = theirs["near_sets"]
            figures["cleanlab_copies_found"] = sum(
                p["paths"][1] in sets.get(p["paths"][0], set()) or p["paths"][0] in sets.get(p["paths"][1], set())
                for p in planted)
            figures["cleanlab_unplanted_flagged"] = len(theirs["near_flagged"] - in_pairs)
            figures["cleanlab_flagged_mislabels"] = len(theirs["flagged"])
            rows.append(figures)
            print(json.dumps(figures), file=sys.stderr)
    everything = rows
    print("| set | labels | flips | true flips in top K: indexer / Datalab | suggestion right (of those) | "
          "copies found (of 20) | unplanted flagged as duplicates | audit s: indexer / Datalab |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['set']} | {r['labels']} | {r['flips']} | {r['indexer_top_k']} / {r['cleanlab_top_k']} | "
              f"{r['indexer_suggestion_right']} / {r['cleanlab_suggestion_right']} | "
              f"{r['indexer_copies_found']} / {r['cleanlab_copies_found']} | "
              f"{r['indexer_unplanted_flagged']} / {r['cleanlab_unplanted_flagged']} | "
              f"{r['indexer_seconds']} / {r['cleanlab_seconds']} |")
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
