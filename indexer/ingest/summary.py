"""What one ingest run did."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class IngestSummary:
    """What one run did. ``embedded``: newly embedded; ``reused``: content already embedded (a moved
    or duplicated file); ``unchanged``: skipped without reading; ``failed``: unreadable this run."""

    embedded: int = 0
    unchanged: int = 0
    reused: int = 0
    failed: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    scanned: int = 0
    deleted: int = 0  # items whose file is gone from a scanned folder or archive (kept as history)
    purged: int = 0  # deleted items removed for good (``purge=True``)
    metadata_filled: int = 0  # items embedded earlier whose metadata was read now (no embedding made)
    metadata_skipped: int = 0  # captions not kept (too large, not UTF-8, bad JSON); each one warned
    seconds: float = 0.0
    run_id: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def count_failure(self, reason: str) -> None:
        self.failed += 1
        self.failed_by_reason[reason] = self.failed_by_reason.get(reason, 0) + 1
