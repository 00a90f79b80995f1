"""Mislabel detection of `indexer audit` on rendered shapes with labels flipped on purpose.

Renders CLASSES x PER_CLASS pictures with ``indexer.synthetic`` (the bundled model's vocabulary),
ingests them once with the bundled ``tiny-shapes`` model, then, for each seed, flips FRACTION of the
labels to another class at random (a ``path,label`` CSV) and audits. Prints, per seed and on average:
precision and recall of the K top-ranked mislabel findings (K = the number of flipped labels; at that
cut precision equals recall), and precision / recall of everything flagged.

    python scripts/audit_benchmark.py                       # 48 classes x 10, 5 % flipped, seeds 0-9
    python scripts/audit_benchmark.py --neighbour-weight 0  # pure zero-shot probabilities
"""

from __future__ import annotations

import argparse
import csv
import shutil
import time
from pathlib import Path

import numpy as np

from indexer import open_index, synthetic
from indexer.errors import ModelMismatchError
from indexer.audit import AuditOptions, audit
from indexer.audit.dataset import csv_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/indexer-audit-benchmark"),
                        help="Folder for the pictures and the index (reused when present).")
    parser.add_argument("--per-class", type=int, default=10, help="Pictures per class (48 classes).")
    parser.add_argument("--fraction", type=float, default=0.05, help="Share of labels flipped.")
    parser.add_argument("--seeds", type=int, default=10, help="Number of flip draws (seeds 0..N-1).")
    parser.add_argument("--templates", default="default", help="Prompt templates: none, default, ensemble.")
    parser.add_argument("--neighbour-weight", type=float, default=AuditOptions.neighbour_weight,
                        help="Share of the k-NN label vote in the label probabilities.")
    args = parser.parse_args()

    photos, index_dir = args.work / f"photos-{args.per_class}", args.work / f"index-{args.per_class}"
    if not photos.exists():
        synthetic.write_labelled_folder(photos, args.per_class, synthetic.ALL_CLASSES, seed=3, size=64)
    started = time.time()
    try:
        index = open_index(index_dir, model="tiny-shapes")
    except ModelMismatchError:  # left by an earlier bundled model: its embeddings are of no use now
        shutil.rmtree(index_dir)
        index = open_index(index_dir, model="tiny-shapes")
    with index:
        index.ingest([photos])
    print(f"{len(synthetic.ALL_CLASSES)} classes x {args.per_class} pictures, ingested in {time.time() - started:.1f} s")

    classes = list(synthetic.ALL_CLASSES)
    items = sorted((str(p.resolve()), p.parent.name.replace("_", " ")) for p in photos.glob("*/*.png"))
    options = AuditOptions(templates=args.templates, neighbour_weight=args.neighbour_weight, near_threshold=1.0)
    figures = []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        flipped = set(rng.choice(len(items), round(args.fraction * len(items)), replace=False).tolist())
        labels_file = args.work / f"labels-{seed}.csv"
        with labels_file.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label"])
            for i, (path, label) in enumerate(items):
                if i in flipped:
                    label = rng.choice([c for c in classes if c != label])
                writer.writerow([path, label])
        wrong = {items[i][0] for i in flipped}
        with open_index(index_dir) as index:
            started = time.time()
            result = audit(index.context, csv_labels(index.context, labels_file), options)
            seconds = time.time() - started
        found = [f.path for f in result.of_type("mislabel")]
        k = len(wrong)
        at_k = sum(p in wrong for p in found[:k]) / k
        hits = sum(p in wrong for p in found)
        precision, recall = hits / max(len(found), 1), hits / k
        # The suggested label of a correctly found flip should be its true class.
        truth = dict(items)
        right_suggestion = sum(f.details["suggested_label"] == truth[f.path]
                               for f in result.of_type("mislabel")[:k] if f.path in wrong) / max(1, round(at_k * k))
        figures.append((at_k, precision, recall, len(found), right_suggestion))
        print(f"seed {seed}: {k} flipped; top-{k} precision = recall {at_k:.3f}; all {len(found)} flagged: "
              f"precision {precision:.3f} recall {recall:.3f}; right suggestion {right_suggestion:.3f} ({seconds:.2f} s)")
    mean = np.mean(figures, axis=0)
    print(f"mean over {args.seeds} seeds (templates {args.templates}, neighbour weight {args.neighbour_weight}): "
          f"top-K precision = recall {mean[0]:.3f}; flagged {mean[3]:.1f}: precision {mean[1]:.3f}, "
          f"recall {mean[2]:.3f}; suggestion = true class {mean[4]:.3f}; chance precision {args.fraction:.3f}")


if __name__ == "__main__":
    main()
