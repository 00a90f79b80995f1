"""Whether a run embeds with an int8 image tower: asked for (``--precision int8``) or chosen by ``auto``
on the collection itself, and kept with the index.

An int8 tower is calibrated on the first pictures of the collection being ingested, then measured
against the float tower on pictures of the same collection it was not calibrated on: the cosine of
each embedding, and ``recall_at_10``, how many of a picture's ten nearest neighbours the int8 tower
finds as the float one does (what a search returns). The tower lives in the index's own folder
(``INT8_FOLDER``, calibrated on this collection) and the figures in its catalog (``INT8_KEY``), which
``indexer status`` shows; later runs on the index follow the decision recorded there, so one index
never mixes the towers of two decisions.

``auto`` chooses int8 only when all of these hold, and records why not otherwise:
- OpenVINO runs the model, NNCF is installed and the CPU has int8 units;
- the index holds no embedding yet (a float index stays float);
- at least ``AUTO_MIN_ITEMS`` items are to be embedded: calibrating ViT-B-32-256 on 128 pictures and
  measuring it on 128 more cost 52 s on two Xeon cores with AMX (in a process of its own, peak 2.2 GB),
  and the int8 tower ran at 114 img/s against bf16's 94, 1.9 ms a picture saved, so the calibration pays
  back after ~27,000 pictures of tower time alone and later still end to end, where decoding takes a
  third of the cores (``scripts/bench_int8.py``, ``scripts/bench_ingest.py``); a smaller collection is
  embedded sooner in bf16;
- the measured agreement clears ``MIN_RECALL_AT_10`` and ``MIN_COSINE_MEAN``. At recall 0.9 a search's
  top 10 differs from full precision's by one picture on average, about what an approximate FAISS
  layout costs already; below it, int8 changes what people see. The cosine floor catches a tower that
  is wrong everywhere while neighbour order survives by chance.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from ..store.states import INT8_KEY

if TYPE_CHECKING:
    from ..store.catalog import Catalog

INT8_FOLDER = "int8"  # in the index folder: the int8 image tower calibrated on this collection
AUTO_MIN_ITEMS = 50_000
MIN_RECALL_AT_10 = 0.90
MIN_COSINE_MEAN = 0.98
CALIBRATION_PICTURES = 128  # NNCF's peak memory grows with them (scripts/bench_int8.py)
HELD_OUT_PICTURES = 128


def _record(catalog: "Catalog", decision: dict[str, Any]) -> dict[str, Any]:
    decision = dict(decision, decided=time.time())
    catalog.set_meta(INT8_KEY, decision)
    return decision


def int8_batches(embedder: Any, batches: Iterator[Any], catalog: "Catalog", folder: Path, todo: int,
                 warn: Callable[[str], None]) -> Iterator[Any]:
    """The batches, unchanged, once the embedder runs the image tower this run decided on (see the
    module docstring); the decision is told through ``warn`` when it is made."""
    asked = embedder.asked_precision
    if asked not in ("auto", "int8"):
        yield from batches
        return
    recorded = catalog.get_meta(INT8_KEY)
    if recorded and recorded.get("chosen") == "int8" and embedder.use_int8(folder):
        yield from batches
        return
    if recorded and asked == "auto":  # float chosen before (or its int8 tower went away): stay float
        yield from batches
        return
    if asked == "auto":
        reason = embedder.int8_unavailable()
        if reason is None and catalog.count_embedded() > 0:
            reason = "the index already holds float embeddings"
        if reason is None and todo < AUTO_MIN_ITEMS:
            reason = (f"{todo} items to embed, fewer than {AUTO_MIN_ITEMS}: calibrating would cost more "
                      "than the int8 tower saves")
        if reason is not None:
            _record(catalog, {"chosen": embedder.precision, "reason": reason})
            yield from batches
            return
    elif (reason := embedder.int8_unavailable()) is not None:
        from ..errors import ModelError

        raise ModelError(f"--precision int8: {reason}")
    held: list[Any] = []
    wanted = CALIBRATION_PICTURES + HELD_OUT_PICTURES
    for batch in batches:
        held.append(batch)
        if sum(len(b.images) for b in held if b.images is not None) >= wanted:
            break
    pictures = [b.images for b in held if b.images is not None]
    if pictures:
        every = np.concatenate(pictures)
        # Held out: the last quarter of a small collection, else HELD_OUT_PICTURES after the calibration set.
        split = min(CALIBRATION_PICTURES, max(1, len(every) * 3 // 4)) if len(every) > 1 else len(every)
        calibration = every[:split]
        held_out = every[split:split + HELD_OUT_PICTURES] if split < len(every) else every
        figures = embedder.calibrate(calibration, held_out, folder)
        del every, calibration
        passes = figures["recall_at_10"] >= MIN_RECALL_AT_10 and figures["cosine_mean"] >= MIN_COSINE_MEAN
        told = (f"recall@10 {figures['recall_at_10']}, cosine mean {figures['cosine_mean']} (min "
                f"{figures['cosine_min']}) on {figures['held_out']} held-out pictures")
        if passes or asked == "int8":
            decision = _record(catalog, {"chosen": "int8", **figures, "asked": asked,
                                         "reason": "asked for" if asked == "int8" and not passes else
                                         f"agreement cleared recall@10 >= {MIN_RECALL_AT_10} and cosine "
                                         f"mean >= {MIN_COSINE_MEAN}"})
            warn(f"int8 image tower calibrated on {figures['calibrated_on']} pictures of this collection in "
                 f"{figures['seconds']} s; agreement with the float tower: {told}"
                 + ("" if passes else f" (below the thresholds auto asks for: recall@10 >= {MIN_RECALL_AT_10}, "
                    f"cosine mean >= {MIN_COSINE_MEAN})"))
        else:
            embedder.use_float()
            decision = _record(catalog, {"chosen": embedder.precision, **figures, "asked": asked,
                                         "reason": f"int8 agreement too low: {told}; auto needs recall@10 >= "
                                                   f"{MIN_RECALL_AT_10} and cosine mean >= {MIN_COSINE_MEAN}"})
            warn(f"stayed {decision['chosen']}: {decision['reason']}")
    yield from held
    yield from batches
