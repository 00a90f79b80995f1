"""Numbers at the edges of what a client may send: an embedding near float32's limit answers as the
same embedding scaled down would; a weight too large to add up is refused with a reason, not answered
with nothing."""

from __future__ import annotations

import httpx
import numpy as np

from indexer import open_index

from .live_server import live_server


def test_huge_embeddings_and_weights_are_answered_or_refused_never_silently_wrong(index_copy):
    with open_index(index_copy) as index:
        item_id = 1
        stored = index.item_embedding(item_id)
    with live_server({"shapes": index_copy}) as url, httpx.Client(base_url=url, timeout=60) as client:
        plain = client.post("/knn-service", json={"embedding_input": stored.tolist(), "num_images": 3,
                                                   "indice_name": "shapes"}).json()
        huge = client.post("/knn-service", json={"embedding_input": (stored.astype(np.float64) * 1e30).tolist(),
                                                  "num_images": 3, "indice_name": "shapes"}).json()
        assert [r["id"] for r in huge] == [r["id"] for r in plain] and huge[0]["id"] == item_id
        assert abs(huge[0]["similarity"] - plain[0]["similarity"]) < 1e-3 and huge[0]["similarity"] > 0.99
        for q in ("9" * 400 + ":a red star", "9" * 400 + ":a red star + a blue circle"):
            refused = client.get("/api/search", params={"q": q})
            assert refused.status_code == 400 and "weight" in refused.json()["detail"], refused.text
