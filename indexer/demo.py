"""The demo: a fresh sample collection, ingested with the bundled model, searched and classified.

It runs offline in well under a minute and shows the whole path a real collection takes, including
zero-shot classification of (colour, shape) classes the bundled model never saw in training.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from . import synthetic
from .errors import IndexerError
from .config import BUNDLED_MODEL
from .index import open_index


def run_demo(folder: Path, say: Callable[[str], None], per_class: int = 5, seed: int = 2026,
             progress: Optional[Callable[[str, int, int], None]] = None) -> dict:
    """Builds ``folder/photos`` and ``folder/index``, and tells ``say`` what a newcomer should see."""
    photos, index_dir = folder / "photos", folder / "index"
    say(f"1. Drawing {per_class * len(synthetic.ALL_CLASSES)} pictures of 48 (colour, shape) classes into {photos}")
    try:
        for old in (photos, index_dir):  # a demo starts from scratch
            if old.exists():
                shutil.rmtree(old)
        synthetic.write_labelled_folder(photos, per_class, synthetic.ALL_CLASSES, seed=seed, size=128,
                                        image_format="jpg")
        (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this JPEG stops here")
        (photos / "notes.png").write_text("a text file with an image name")
    except OSError as exc:
        raise IndexerError(f"cannot write the demo into {folder}: {exc.strerror or exc}; choose another --dir") from None

    say(f"\n2. Ingesting them with the bundled model '{BUNDLED_MODEL}' (offline) into {index_dir}")
    with open_index(index_dir, model=BUNDLED_MODEL) as index:
        summary = index.ingest([photos], progress=progress, warn=lambda m: say("   " + m))
        say(f"   {summary.embedded} embedded, {summary.unchanged} unchanged, {summary.reused} reused, "
            f"{summary.failed} unreadable files recorded ({', '.join(sorted(summary.failed_by_reason))}) "
            f"in {summary.seconds:.1f} s")

        say("\n3. Searching by text (scores are cosine similarities):")
        for query in ("a red star", "a large orange cross", "a star - yellow", "2:triangle + white"):
            hits = index.search(query, k=3)
            say(f"   {query!r}: " + ", ".join(f"{Path(h.path).parent.name}/{Path(h.path).name} ({h.score:.2f})"
                                             for h in hits))
        example = sorted((photos / "green_cross").iterdir())[0]
        hits = index.search(images=[example], k=3)
        say(f"   like {example.parent.name}/{example.name}: "
            + ", ".join(f"{Path(h.path).parent.name}/{Path(h.path).name} ({h.score:.2f})" for h in hits))

        say("\n4. Classifying the whole collection into the 48 class names (zero-shot, no image re-read):")
        predictions = []
        result = index.classify(list(synthetic.ALL_CLASSES), templates="default",
                                on_predictions=predictions.extend)
        truth = [Path(p.path).parent.name.replace("_", " ") for p in predictions]
        guess = [p.labels[0][0] for p in predictions]
        unseen = set(synthetic.UNSEEN_CLASSES)
        seen_acc = float(np.mean([g == t for g, t in zip(guess, truth) if t not in unseen]))
        unseen_acc = float(np.mean([g == t for g, t in zip(guess, truth) if t in unseen]))
        say(f"   {result.items} pictures in {result.seconds:.2f} s; top-1 accuracy on classes seen in training: "
            f"{seen_acc:.0%}, on the 12 classes never seen in training: {unseen_acc:.0%} (chance: 2%)")
        for t in sorted(unseen)[:4]:
            hits = [g for g, tt in zip(guess, truth) if tt == t]
            say(f"   never seen '{t}': {sum(g == t for g in hits)}/{len(hits)} right")

    say("\nNext: try your own queries on this index, for example\n"
        f"   indexer search \"a small purple square\" --index {index_dir}\n"
        f"   indexer classify --labels \"circle,square,star\" --index {index_dir} --output labels.csv\n"
        f"   indexer status --index {index_dir}")
    return {"embedded": summary.embedded, "failed": summary.failed, "seen_accuracy": seen_acc,
            "unseen_accuracy": unseen_acc}

