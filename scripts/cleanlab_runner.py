"""The cleanlab side of ``scripts/audit_vs_cleanlab.py``: run in a virtual environment of its own that has
cleanlab and scikit-learn (cleanlab is AGPL-3.0: it is never a dependency of indexer, and nothing in
``indexer/`` imports it). Reads the embeddings and given labels the indexer side wrote (an ``.npz``),
makes 5-fold cross-validated logistic-regression probabilities on them, runs Datalab on the features
and those probabilities, and writes what it found as JSON.

    /tmp/cleanlab-venv/bin/python scripts/cleanlab_runner.py IN.npz OUT.json [C]

C: the logistic regression's inverse regularisation (scikit-learn's default 1.0).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def main() -> None:
    from cleanlab import Datalab
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    data = np.load(sys.argv[1], allow_pickle=False)
    features, labels = data["features"].astype(np.float32), data["labels"].astype(np.int64)
    started = time.time()
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    strength = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    probs = cross_val_predict(LogisticRegression(C=strength, max_iter=1000), features, labels, cv=folds,
                              method="predict_proba")
    lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    lab.find_issues(features=features, pred_probs=probs)
    label_issues = lab.get_issues("label")
    order = np.argsort(label_issues["label_score"].to_numpy(), kind="stable")
    duplicates = lab.get_issues("near_duplicate")
    flagged = np.flatnonzero(duplicates["is_near_duplicate_issue"].to_numpy())
    sets = duplicates["near_duplicate_sets"].to_numpy()
    out = {
        "label_order": order.tolist(),
        "label_flagged": np.flatnonzero(label_issues["is_label_issue"].to_numpy()).tolist(),
        "suggested": label_issues["predicted_label"].to_numpy().astype(int).tolist(),
        "near_flagged": flagged.tolist(),
        "near_sets": {int(i): [int(j) for j in sets[i]] for i in flagged.tolist()},
        "seconds": time.time() - started,
    }
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
