#!/usr/bin/env python
"""Evaluate the bundled tiny-shapes model and record the figures in its model card.

    python scripts/evaluate_bundled_model.py            # prints the figures and updates model_card.json

Two held-out sets, both rendered fresh (nothing here was seen in training):
- the project's generator with a new seed (48 classes x 50 pictures, 64 px);
- plain shapes drawn by other code (tests/plain_shapes.py: implicit functions, pure web colours,
  smooth backgrounds; 48 classes x 10 pictures, 128 px).
Each is evaluated with `indexer eval` machinery as one 48-way task, for each template set, with the
generalized zero-shot figures (S, U, H) with and without calibrated stacking.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indexer import open_index, synthetic  # noqa: E402
from indexer.query.evaluate import evaluate  # noqa: E402
from indexer.models import bundled  # noqa: E402
from tests.plain_shapes import write_plain_folder  # noqa: E402


def figures(report) -> dict:
    g = report.gzsl
    out = {"top1": report.top1, "top5": report.top5, "mean_per_class_recall": report.mean_per_class_recall,
           "seen_accuracy_S": g["uncalibrated"]["seen_accuracy"], "unseen_accuracy_U": g["uncalibrated"]["unseen_accuracy"],
           "harmonic_mean_H": g["uncalibrated"]["harmonic_mean"], "zsl_unseen_accuracy": g["zsl_unseen_accuracy"],
           "unseen_labelled_seen": g["unseen_predicted_as_seen"]}
    if "calibrated" in g:
        c = g["calibrated"]
        out["calibrated"] = {"S": c["seen_accuracy"], "U": c["unseen_accuracy"], "H": c["harmonic_mean"],
                             "constants": c.get("constants")}
    out["worst_classes"] = [f"{r['class']} {r['recall']:.2f} (-> {r['most_confused_with']})"
                            for r in sorted(report.per_class, key=lambda r: r["recall"])[:5]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--plain-per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--no-write", action="store_true", help="print only; leave the model card alone")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="eval-tiny-"))
    started = time.time()
    synthetic.write_labelled_folder(work / "generator", args.per_class, synthetic.ALL_CLASSES, seed=args.seed,
                                    size=64, image_format="png")
    write_plain_folder(work / "plain", list(synthetic.ALL_CLASSES), per_class=args.plain_per_class, seed=args.seed)
    results: dict = {}
    for name in ("generator", "plain"):
        with open_index(work / f"index-{name}", model="tiny-shapes") as index:
            index.ingest([work / name])
            for templates in ("none", "default", "ensemble"):
                report = evaluate(index.context, work / name, templates, synthetic.UNSEEN_CLASSES, "auto")
                results[f"{name}/{templates}"] = figures(report)
                f = results[f"{name}/{templates}"]
                print(f"{name:<9} {templates:<8} top-1 {f['top1']:.3f}  S {f['seen_accuracy_S']:.3f}  "
                      f"U {f['unseen_accuracy_U']:.3f}  H {f['harmonic_mean_H']:.3f}  ZSL {f['zsl_unseen_accuracy']:.3f}  "
                      f"calibrated H {f['calibrated']['H']:.3f}", flush=True)
    print(f"evaluated in {time.time() - started:.0f} s")
    if args.no_write:
        return
    card_path = bundled.folder("tiny-shapes") / "model_card.json"
    card = json.loads(card_path.read_text())
    card["evaluation_held_out"] = {
        "command": "python scripts/evaluate_bundled_model.py",
        "generator_set": f"indexer.synthetic, seed {args.seed}, {args.per_class} pictures per class, 64 px",
        "plain_set": f"tests/plain_shapes.py (other drawing code), seed {args.seed}, "
                     f"{args.plain_per_class} pictures per class, 128 px",
        "task": "one 48-way classification over all classes; S and U over all labels at once (GZSL); ZSL over "
                "the 12 unseen labels only; calibrated stacking two-fold cross-validated",
        "results": results,
    }
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {card_path}")


if __name__ == "__main__":
    main()
