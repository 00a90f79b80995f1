"""The index's model: the identity recorded in the catalog, the model asked for, and the loaded embedder.

Once recorded, an index's model never changes: opening it with another is refused with a message that
says what to do (invariant 3). The model is loaded only when something has to be embedded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..config import DEFAULT_MODEL, DEFAULT_PRETRAINED, Settings
from ..errors import EmptyIndexError, ModelError, ModelMismatchError
from ..models import Embedder, ModelSpec, bundled, load_model, same_model
from ..models.spec import mismatch_message

if TYPE_CHECKING:
    from ..store.catalog import Catalog


def empty_index(path: Path) -> EmptyIndexError:
    """The error for an index with nothing embedded yet."""
    return EmptyIndexError(f"no embedded items in {path}; run `indexer ingest` first")


class IndexModel:
    """The model of the index at ``path``: its recorded identity, its spec and (lazily) the embedder."""

    def __init__(self, path: Path, catalog: "Catalog", settings: Settings, requested: Optional[ModelSpec]) -> None:
        self.path, self.catalog, self.settings, self.requested = path, catalog, settings, requested
        self._recorded: Optional[dict] = None
        self._embedder: Optional[Embedder] = None
        recorded = self.recorded
        if recorded and requested is not None:
            identity = requested.identity()
            if not same_model(recorded, identity):
                raise ModelMismatchError(mismatch_message(path, recorded, requested, identity))

    @property
    def recorded(self) -> Optional[dict]:
        """The identity recorded in the catalog (None before the first embedding). Read from the catalog
        until it is recorded, never after: it cannot change."""
        if self._recorded is None:
            self._recorded = self.catalog.get_meta("model")
        return self._recorded

    @property
    def spec(self) -> ModelSpec:
        """The index's model: the one recorded in the catalog, else the one asked for, else the default."""
        recorded, requested = self.recorded, self.requested
        if recorded:
            weights = requested.weights if requested and requested.weights else recorded.get("weights")
            if weights and bundled.is_bundled(recorded["name"]):
                raise ModelError(f"the index's model {recorded['name']} comes with its own weights; leave the "
                                 "weights out")
            if weights and not Path(weights).is_file():
                raise ModelError(f"the index's model weights {weights} are gone; give the path of the same file "
                                 "again (--weights PATH)")
            return ModelSpec(name=recorded["name"], pretrained=recorded.get("pretrained"), weights=weights)
        return requested or ModelSpec(DEFAULT_MODEL, DEFAULT_PRETRAINED)

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded in this process (answers from the catalog never load it)."""
        return self._embedder is not None

    def embedder(self) -> Embedder:
        """The loaded model (on the CPU: OpenVINO, converted with torch on first use; on a GPU: torch)."""
        if self._embedder is None:
            settings = self.settings
            embedder = load_model(self.spec, device=settings.device, threads=settings.threads,
                                  runtime=settings.runtime, precision=settings.precision)
            self.record(embedder.identity())
            self._embedder = embedder
        return self._embedder

    def record(self, identity: dict) -> None:
        """Records a loaded model's ``identity`` in a new index; refuses one other than the index's own
        (also used for the models that distributed workers load)."""
        spec = self.spec
        identity = dict(identity, weights=str(Path(spec.weights).resolve()) if spec.weights else None)
        recorded = self.recorded
        if recorded is None:
            self.catalog.set_meta("model", identity)
            self._recorded = identity
        elif not same_model(recorded, identity) or int(recorded["embed_dim"]) != int(identity["embed_dim"]):
            raise ModelMismatchError(mismatch_message(self.path, recorded, spec, identity))

    def _required(self) -> dict:
        recorded = self.recorded
        if not recorded:
            raise empty_index(self.path)
        return recorded

    @property
    def dim(self) -> int:
        """The embedding size (from the recorded model)."""
        return int(self._required()["embed_dim"])

    @property
    def logit_scale(self) -> float:
        """The model's softmax temperature over cosines (100 when not recorded)."""
        return float((self.recorded or {}).get("logit_scale", 100.0))

    @property
    def key(self) -> str:
        """A short digest of the model's identity: the key of its cached texts and of its heads."""
        recorded = self._required()
        key = {k: recorded.get(k) for k in ("name", "pretrained", "weights_sha256")}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
