"""Stored zero-shot heads: one row per head, by unique name (``indexer.heads`` trains and reads them)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from ..errors import HeadError
from .schema import TrainedHead

if TYPE_CHECKING:

    from .catalog import Catalog


@dataclass(frozen=True)
class HeadRow:
    """A stored head as plain data; ``weights`` is the blob (empty when listed without it)."""

    id: int
    name: str
    method: str
    classes: list[str]
    hparams: dict[str, Any]
    model_key: str
    figures: dict[str, Any]
    created_at: float
    weights: bytes = b""
    weights_bytes: int = 0


class CatalogHeads:
    """Trained heads (``catalog.heads``)."""

    def __init__(self, catalog: "Catalog") -> None:
        self.catalog = catalog

    def save(self, name: str, method: str, classes: list[str], hparams: dict[str, Any], model_key: str,
                  figures: dict[str, Any], weights: bytes, replace: bool = False) -> int:
        """Stores a head under ``name`` (replacing one of that name only when ``replace``); its id."""
        values = dict(name=name, method=method, classes=json.dumps(list(classes)), hparams=json.dumps(hparams),
                      model_key=model_key, figures=json.dumps(figures), weights=weights, created_at=time.time())
        try:
            with self.catalog.begin() as conn:
                if replace:
                    conn.execute(delete(TrainedHead).where(TrainedHead.name == name))
                return int(conn.execute(insert(TrainedHead).values(**values)).inserted_primary_key[0])
        except IntegrityError:
            raise HeadError(f"a head named {name!r} exists already; choose another name, delete it "
                            f"(indexer heads delete {name}) or pass --replace") from None

    def get(self, name: str) -> Optional[HeadRow]:
        """The head ``name`` with its weights, or None."""
        with self.catalog.read() as conn:
            row = conn.execute(select(TrainedHead).where(TrainedHead.name == name)).first()
        return None if row is None else _to_row(row, with_weights=True)

    def rows(self) -> list[HeadRow]:
        """Every stored head, oldest first, without its weights (their size only)."""
        columns = [c for c in TrainedHead.__table__.columns if c.name != "weights"]
        with self.catalog.read() as conn:
            rows = conn.execute(select(*columns, func.length(TrainedHead.weights).label("size"))
                                .order_by(TrainedHead.id)).all()
        return [_to_row(row, with_weights=False) for row in rows]

    def delete(self, name: str) -> bool:
        """Deletes the head ``name``; False when there was none."""
        with self.catalog.begin() as conn:
            return conn.execute(delete(TrainedHead).where(TrainedHead.name == name)).rowcount > 0


def _to_row(row: Any, with_weights: bool) -> HeadRow:
    weights = bytes(row.weights) if with_weights else b""
    return HeadRow(id=int(row.id), name=row.name, method=row.method, classes=json.loads(row.classes),
                   hparams=json.loads(row.hparams), model_key=row.model_key, figures=json.loads(row.figures),
                   created_at=float(row.created_at), weights=weights,
                   weights_bytes=len(weights) if with_weights else int(row.size or 0))
