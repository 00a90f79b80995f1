"""The FAISS index beside the catalog: a derived accelerator over the catalog's embeddings.

Vectors are the catalog's L2-normalised embeddings, searched by inner product (= cosine), under the
catalog's embedding ids. The file is written to a temporary name, fsynced and renamed into place.
When it is missing, corrupt, made for another catalog, or behind, it is caught up or rebuilt from the
catalog's stored embeddings: images are never decoded again.

Layout, chosen from the vector count and a memory budget:

- up to ``FLAT_MAX`` vectors (200,000 by default): exact search (``IndexFlatIP``);
- above: ``IVF`` (an inverted file with ~sqrt(n) lists, trained on a sample), with ``nprobe`` tuned
  at build time to reach recall@10 >= 0.97 against exact search (measured and recorded, shown by
  ``indexer status``);
- above, when the flat vectors would not fit the memory budget (``--index-memory``): ``IVF-PQ``
  (``IVF{nlist},PQ{m}x8``): ``m`` bytes of product-quantised code per vector, ``m`` as large as the budget
  allows (16x compression of float32 at ``m = d/4``). Its candidates (``PQ_RERANK`` times k) are
  re-ranked exactly with the catalog's stored fp16 embeddings, and nprobe is tuned on that re-ranked
  result. autofaiss would add an OPQ rotation; here it tripled the build for no recall after the re-rank
  (``choose_layout``), so new layouts have none (files built with one still load and grow).

New vectors are added to a trained index without retraining; the index is rebuilt (trained again)
only when the collection has grown fourfold since training, or needs another layout.

Staying in sync needs no bookkeeping: embedding ids only grow (SQLite AUTOINCREMENT), so a file that
holds every id up to its largest is caught up by adding the ids above it, and any deletion since
shows as a count that no longer matches, which triggers a rebuild (or is applied by ``remove``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import faiss
import numpy as np

from ..config import DEFAULT_FLAT_MAX
from .files import VECTORS_FILE, VECTORS_META, atomic_write

if TYPE_CHECKING:
    from .catalog import Catalog

log = logging.getLogger(__name__)

# (a trained, empty index; a progress callback or None) -> that index holding every catalog embedding
Filler = Callable[[faiss.Index, Optional[Callable[[int], None]]], faiss.Index]

TARGET_RECALL = 0.97
RECALL_QUERIES = 200
PQ_RERANK = 50  # IVF-PQ fetches this many times k candidates, then re-ranks them exactly
RERANK_READ = 65_536  # candidates read from the catalog at once when re-ranking a block of queries
PQ_RERANK_DEPTHS = (50, 100, 200, 400)  # tried in turn by the build's tuning until recall@10 is reached
PQ_POINTS_PER_CENTROID = 64  # codebooks trained on at most 64 x 256 = 16,384 points


@dataclass
class Layout:
    """What kind of FAISS index to build, and how it was tuned."""

    kind: str  # "flat", "ivf" or "ivfpq"
    nlist: int = 0
    pq_m: int = 0
    opq: bool = False  # a learned rotation before the PQ (files written before it existed have none)
    nprobe: int = 0
    rerank: int = 0  # IVF-PQ: candidates re-ranked exactly, as a multiple of k (0: PQ_RERANK)
    recall_at_10: Optional[float] = None
    trained_count: int = 0
    tuned_count: int = 0

    def describe(self) -> str:
        if self.kind == "flat":
            return "Flat (exact inner product)"
        name = f"IVF{self.nlist},Flat" if self.kind == "ivf" else \
            f"{self.factory_string(0).replace('_0', '')} + exact re-rank of {self.rerank or PQ_RERANK} x k"
        recall = f", recall@10 {self.recall_at_10:.3f}" if self.recall_at_10 is not None else ""
        return f"{name} (nprobe {self.nprobe}{recall})"

    def factory_string(self, dim: int) -> str:
        if self.kind == "ivf":
            return f"IVF{self.nlist},Flat"
        return (f"OPQ{self.pq_m}_{dim}," if self.opq else "") + f"IVF{self.nlist},PQ{self.pq_m}x8"

    def code_bytes(self, dim: int) -> int:
        """Bytes per vector in the index (codes and ids, not the lists' overhead)."""
        return {"flat": dim * 4 + 8, "ivf": dim * 4 + 8}.get(self.kind, self.pq_m + 8)


def choose_layout(count: int, dim: int, memory_budget: Optional[int] = None,
                  flat_max: int = DEFAULT_FLAT_MAX) -> Layout:
    over_budget = memory_budget is not None and count * dim * 4 > memory_budget
    if count <= flat_max and not (over_budget and count >= 10_000):  # PQ needs data to train on
        return Layout("flat")
    nlist = int(min(65536, max(64, 2 ** round(math.log2(math.sqrt(count))))))
    if not over_budget:
        return Layout("ivf", nlist=nlist)
    # Bytes of code per vector within 90 % of the budget (ids take 8 more); sub-vectors of at least 2 dims.
    per_vector = max(4, int(memory_budget * 0.9 / count) - 8)
    divisors = [m for m in range(4, dim // 2 + 1) if dim % m == 0 and m <= per_vector]
    pq_m = max(divisors) if divisors else min(m for m in range(4, dim + 1) if dim % m == 0)
    # No OPQ rotation: measured at 100k x 512 (scripts/bench_vectors.py, docs/figures.md "Compressed vectors"), training it was
    # three quarters of a 12-minute build on two cores, and with the exact re-rank recall@10 is the same
    # with and without it (0.972 both in the earlier paired run). Files built with one still load.
    return Layout("ivfpq", nlist=nlist, pq_m=pq_m, opq=False)


def merge_ivf(into: faiss.Index, part: faiss.Index) -> None:
    """Moves the lists of ``part`` (the same trained IVF layout, other ids) into ``into``."""
    target = faiss.extract_index_ivf(into)
    target.merge_from(faiss.extract_index_ivf(part), 0)
    into.ntotal = target.ntotal  # a wrapper (the OPQ rotation) keeps a count of its own


def index_ids(index: faiss.Index) -> np.ndarray:
    """Every id held by ``index`` (an IDMap over a flat index, or an IVF index)."""
    if index.ntotal == 0:
        return np.zeros(0, dtype=np.int64)
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return faiss.vector_to_array(index.id_map)
    ivf = faiss.extract_index_ivf(index)
    lists = ivf.invlists
    parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
             for i in range(ivf.nlist) if lists.list_size(i)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def sample_embeddings(catalog: "Catalog", count: int, seed: int = 0) -> np.ndarray:
    """About ``count`` stored embeddings picked at random (ids are dense, so a random id range works)."""
    low, high = catalog.embeddings.id_range()
    rng = np.random.default_rng(seed)
    wanted = np.unique(rng.integers(low, high + 1, size=min(count * 2, high - low + 1)))[: count * 2]
    rng.shuffle(wanted)
    return catalog.embeddings.by_ids(wanted.tolist())[1][:count]


def exact_top_k(catalog: "Catalog", queries: np.ndarray, k: int) -> np.ndarray:
    """Ids of the exact top ``k`` per query, by a pass over the catalog in chunks (bounded memory)."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.full((len(queries), k), -1, dtype=np.int64)
    for ids, matrix in catalog.embeddings.pages():
        scores = queries @ matrix.T
        all_scores = np.concatenate([best_scores, scores], axis=1)
        all_ids = np.concatenate([best_ids, np.broadcast_to(ids, scores.shape)], axis=1)
        top = np.argpartition(-all_scores, k - 1, axis=1)[:, :k]
        best_scores = np.take_along_axis(all_scores, top, axis=1)
        best_ids = np.take_along_axis(all_ids, top, axis=1)
    return best_ids


class VectorIndex:
    """The FAISS index of a catalog, kept in step with it; see the module docstring."""

    def __init__(self, index_dir: Path, catalog: "Catalog", flat_max: int = DEFAULT_FLAT_MAX) -> None:
        self.dir = index_dir
        self.catalog = catalog
        self.flat_max = flat_max  # Settings.flat_max: above it, a trained layout
        self.path = index_dir / VECTORS_FILE
        self.meta_path = index_dir / VECTORS_META
        self.index: Optional[faiss.Index] = None
        self.layout = Layout("flat")
        self.synced: Optional[tuple[int, int]] = None  # the catalog's (count, max id) the index matches
        self.version: Optional[tuple[int, int]] = None  # the catalog's embeddings_version at that time

    # -- state ------------------------------------------------------------------------------------

    def ids(self) -> np.ndarray:
        return index_ids(self.index) if self.index is not None else np.zeros(0, dtype=np.int64)

    def memory_budget(self) -> Optional[int]:
        value = self.catalog.get_meta("vectors.memory_budget")
        return int(value) if value else None

    def _load_file(self, dim: int) -> Optional[faiss.Index]:
        if not self.path.exists() or not self.meta_path.exists():
            return None
        try:
            meta = json.loads(self.meta_path.read_text())
            if meta.get("catalog_id") != self.catalog.catalog_id() or meta.get("dim") != dim:
                log.warning("%s belongs to another catalog or model: rebuilding it", self.path)
                return None
            index = faiss.read_index(str(self.path))
            layout = Layout(**meta["layout"]) if "layout" in meta else Layout("flat")
        except (OSError, ValueError, RuntimeError, TypeError, KeyError) as exc:  # FAISS: RuntimeError when corrupt
            log.warning("%s is unreadable (%s): rebuilding it from the catalog", self.path, exc)
            return None
        if index.d != dim:
            return None
        self.layout = layout
        if layout.kind != "flat":
            faiss.extract_index_ivf(index).nprobe = layout.nprobe
        return index

    def _needs_new_layout(self, count: int, dim: int) -> bool:
        wanted = choose_layout(count, dim, self.memory_budget(), self.flat_max)
        if wanted.kind != self.layout.kind:
            return not (wanted.kind == "flat" and count > 0)  # a shrunken IVF index stays IVF
        return wanted.kind != "flat" and count > 4 * max(1, self.layout.trained_count)

    def load(self, progress: Optional[Callable[[int], None]] = None, sync: bool = True) -> "VectorIndex":
        """Reads the file and brings it in step with the catalog (catch-up, or rebuild when needed);
        with ``sync=False``, the file as it is (``index`` is None when there is none)."""
        dim = self.catalog.embedding_dim()
        self.index = self._load_file(dim) if dim is not None else None
        self.synced = self.version = None
        if sync and dim is not None:
            self.sync(progress)
        return self

    def sync(self, progress: Optional[Callable[[int], None]] = None, filler: Optional[Filler] = None
             ) -> "VectorIndex":
        """Brings the index in memory in step with the catalog: adds the embeddings committed since,
        rebuilds when some were removed or the layout no longer fits (``filler``: see ``rebuild``); saves
        the file when it changed. Costs one short catalog query when nothing changed."""
        dim = self.catalog.embedding_dim()
        if dim is None:
            return self
        version = self.catalog.embeddings_version()
        if self.index is not None and self.synced is not None and version == self.version:
            return self
        self.version = version
        state = self.catalog.embedding_state()
        if state == self.synced and self.index is not None:
            return self
        count, max_id = state
        if self.index is None or self._needs_new_layout(count, dim):
            self.rebuild(progress, filler)
            return self
        index = self.index
        ids = self.ids()
        have_max = int(ids.max()) if len(ids) else 0
        changed = False
        if have_max < max_id:
            for new_ids, matrix in self.catalog.embeddings.pages(after_id=have_max):
                index.add_with_ids(matrix, new_ids)
                if progress:
                    progress(len(new_ids))
            changed = True
        if index.ntotal != count or have_max > max_id:
            log.info("vectors out of step with the catalog (%d vs %d): rebuilding", index.ntotal, count)
            self.rebuild(progress, filler)
            return self
        if self.layout.kind != "flat" and count > 2 * max(1, self.layout.tuned_count):
            self._tune()
            changed = True
        if changed:
            self.save()
        self.synced = state
        return self

    def _mark_synced(self) -> None:
        """Records what the index holds, as the catalog would count it: the next ``sync`` compares."""
        ids = self.ids()
        self.synced = (int(len(ids)), int(ids.max()) if len(ids) else 0)

    def rebuild(self, progress: Optional[Callable[[int], None]] = None, filler: Optional[Filler] = None) -> None:
        """A new index from the catalog: layout chosen from the count, trained on a sample if needed.
        ``filler`` fills a trained layout from the catalog (None: page by page here; the distributed
        runner passes one that encodes id ranges on a Ray cluster and merges the parts)."""
        dim = self.catalog.embedding_dim()
        assert dim is not None
        count, _ = self.catalog.embedding_state()
        layout = choose_layout(count, dim, self.memory_budget(), self.flat_max)
        if layout.kind == "flat":
            index: faiss.Index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        else:
            started = time.time()
            index = faiss.index_factory(dim, layout.factory_string(dim), faiss.METRIC_INNER_PRODUCT)
            if layout.kind == "ivfpq":
                # FAISS's default trains the codebooks on up to 65,536 points: the bulk of a build on few
                # cores, for recall the exact re-rank gives back anyway. 64 points a centroid is FAISS's
                # own working range.
                ivfpq = faiss.downcast_index(faiss.extract_index_ivf(index))
                ivfpq.pq.cp.max_points_per_centroid = PQ_POINTS_PER_CENTROID
            # Trained on a sample (bounded memory: ~50 vectors a list, at least 20,000 and at most 500,000),
            # then filled page by page from the catalog below.
            index.train(sample_embeddings(self.catalog, min(count, min(500_000, max(50 * layout.nlist, 20000)))))
            layout.trained_count = count
            log.info("trained %s on a sample in %.1f s", layout.kind, time.time() - started)
        if filler is not None and layout.kind != "flat":
            index = filler(index, progress)
        else:
            for ids, matrix in self.catalog.embeddings.pages():
                index.add_with_ids(matrix, ids)
                if progress:
                    progress(len(ids))
        self.index, self.layout = index, layout
        if layout.kind != "flat":
            self._tune()
        self.save()
        self._mark_synced()

    def _tune(self) -> None:
        """The smallest nprobe whose recall@10 against exact search reaches ``TARGET_RECALL``."""
        assert self.index is not None
        rng = np.random.default_rng(1)
        base = sample_embeddings(self.catalog, RECALL_QUERIES, seed=2)
        # Queries near stored vectors, not on them: a query is rarely a copy of an indexed picture.
        noisy = base + rng.normal(0, 0.3 / math.sqrt(base.shape[1]), size=base.shape).astype(np.float32)
        queries = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
        truth = exact_top_k(self.catalog, queries, 10)
        ivf = faiss.extract_index_ivf(self.index)
        # IVF-PQ: the codes only shortlist, so a deeper re-rank is tried when probing more lists stops
        # helping (at 1M x 512 in 16x codes, 50 x k candidates capped recall@10 at 0.95 whatever nprobe).
        depths = PQ_RERANK_DEPTHS if self.layout.kind == "ivfpq" else (0,)
        best: tuple[float, int, int] = (-1.0, 1, depths[0])
        for depth in depths:
            self.layout.rerank = depth
            recall, previous = 0.0, 0.0
            for nprobe in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024):
                nprobe = min(nprobe, ivf.nlist)
                ivf.nprobe = nprobe
                _, found = self.search(queries, 10)
                recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))
                # Stop at the target, or where probing more lists no longer helps (the codes cap recall).
                if recall >= TARGET_RECALL or nprobe == ivf.nlist or (nprobe >= 8 and recall - previous < 0.005):
                    break
                previous = recall
            if recall > best[0] + 0.002:
                best = (recall, nprobe, depth)
            if recall >= TARGET_RECALL:
                break
        recall, nprobe, depth = best
        ivf.nprobe = nprobe
        self.layout.nprobe, self.layout.rerank, self.layout.recall_at_10 = nprobe, depth, round(recall, 4)
        self.layout.tuned_count = int(self.index.ntotal)

    def save(self) -> None:
        assert self.index is not None
        if self.catalog.readonly:
            return  # read-only media: the index lives in memory for this process only
        index = self.index
        atomic_write(self.path, lambda tmp: faiss.write_index(index, str(tmp)))
        meta = {
            "catalog_id": self.catalog.catalog_id(),
            "dim": index.d,
            "count": int(index.ntotal),
            "kind": self.layout.describe(),
            "layout": asdict(self.layout),
            "written_at": time.time(),
        }
        atomic_write(self.meta_path, lambda tmp: tmp.write_text(json.dumps(meta, indent=2)))

    # -- operations -------------------------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal) if self.index is not None else 0

    def _parameters(self, ids: Optional[np.ndarray]) -> Optional[faiss.SearchParameters]:
        """Search parameters restricting a search to ``ids`` (an ``IDSelectorBatch``: a hash set of
        them), with the index's own probe count on IVF layouts; None for no restriction."""
        if ids is None:
            return None
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
        if self.layout.kind == "flat":
            params = faiss.SearchParameters(sel=selector)
        else:
            params = faiss.SearchParametersIVF(sel=selector, nprobe=int(faiss.extract_index_ivf(self.index).nprobe))
        params._selector = selector  # the Python side keeps the selector alive while FAISS uses it
        return params

    def search(self, queries: np.ndarray, k: int, ids: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, ids) per query row, best first; ids of -1 pad when fewer are found.
        ``ids``: only among these embedding ids."""
        if self.index is None or self.index.ntotal == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, int(self.index.ntotal))
        params = self._parameters(ids)
        if self.layout.kind != "ivfpq":
            return self.index.search(queries, k, params=params) if params is not None else self.index.search(queries, k)
        depth = self.layout.rerank or PQ_RERANK  # files from before the depth was tuned: the old fixed one
        shortlist = min(k * depth, int(self.index.ntotal))
        _, candidates = (self.index.search(queries, shortlist, params=params) if params is not None
                         else self.index.search(queries, shortlist))
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        # The candidates of a block of queries are read from the catalog in one go (bounded memory).
        step = max(1, RERANK_READ // max(1, candidates.shape[1]))
        for start in range(0, len(candidates), step):
            block = candidates[start:start + step]
            stored, vectors = self.catalog.embeddings.by_ids(np.unique(block[block >= 0]).tolist())
            by_id = np.argsort(stored)
            stored, vectors = stored[by_id], vectors[by_id]
            for row, found in enumerate(block, start):
                wanted = np.unique(found[found >= 0])  # in id order, as one read per query gave them
                held = np.searchsorted(stored, wanted[np.isin(wanted, stored)])  # ids the catalog still holds
                exact = vectors[held] @ queries[row]
                order = np.argsort(-exact)[:k]
                scores[row, : len(order)], ids[row, : len(order)] = exact[order], stored[held][order]
        return scores, ids

    def remove(self, ids: Sequence[int]) -> None:
        """Removes the vectors of embeddings just deleted from the catalog, and saves the file."""
        if self.index is not None and len(ids):
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))
            self.save()
            self._mark_synced()
