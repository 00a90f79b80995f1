"""The API contract: request and response models (the OpenAPI document at /openapi.json, shown at /docs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

MAX_RESULTS = 1000
MAX_ID = 2**62
ItemId = Annotated[int, Field(ge=0, le=MAX_ID)]


# -- clip-retrieval compatible ------------------------------------------------------------------------


class KnnRequest(BaseModel):
    """clip-retrieval's /knn-service body. The safety, violence, mclip and aesthetic fields are accepted
    and ignored (this index has no such models); ``image_url`` is refused: the service fetches nothing."""

    model_config = ConfigDict(extra="ignore")

    text: Optional[str] = Field(None, max_length=2000)
    image: Optional[str] = Field(None, description="A picture as base64 (as ClipClient sends it).")
    image_url: Optional[str] = Field(None, description="Refused: the service never fetches a URL.")
    embedding_input: Optional[list[float]] = Field(None, max_length=4096)
    modality: Literal["image", "text"] = "image"
    num_images: int = Field(40, ge=0, le=MAX_RESULTS)
    num_result_ids: Optional[int] = Field(None, ge=1, le=MAX_RESULTS)
    indice_name: Optional[str] = None
    deduplicate: bool = True
    use_safety_model: bool = False
    use_violence_detector: bool = False
    use_mclip: bool = False
    aesthetic_score: Union[int, str, None] = None
    aesthetic_weight: Union[float, str, None] = None


class KnnResult(BaseModel):
    """One result: the first ``num_images`` carry the picture's path, caption (None when it has none) and a base64 JPEG
    thumbnail; the others only id and similarity."""

    id: int
    similarity: float
    image_path: Optional[str] = None
    caption: Optional[str] = None
    image: Optional[str] = None


class MetadataRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ids: list[ItemId] = Field(..., max_length=MAX_RESULTS)
    indice_name: Optional[str] = None


class MetadataEntry(BaseModel):
    id: int
    metadata: dict[str, Any]


# -- native API ---------------------------------------------------------------------------------------


class Hit(BaseModel):
    id: int = Field(description="The item's catalog id.")
    path: str
    score: float = Field(description="Cosine similarity with the query (with hybrid: the fused rank score).")
    duplicates: list[str] = Field(default_factory=list, description="Other paths with the same content.")
    caption: Optional[str] = Field(None, description="From a sidecar .txt/.json or the WebDataset sample.")
    taken: Optional[str] = Field(None, description="EXIF date taken, YYYY-MM-DD HH:MM:SS (camera's local time).")
    camera: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None


class SearchResponse(BaseModel):
    index: str
    query: Optional[str]
    k: int
    offset: int
    took_ms: float
    hits: list[Hit]


class ItemRef(BaseModel):
    id: int
    path: str


class Item(BaseModel):
    id: int
    path: str
    state: str
    size: Optional[int] = None
    sha256: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    format: Optional[str] = None
    container: Optional[str] = None
    failure_reason: Optional[str] = None
    failure_detail: Optional[str] = None
    caption: Optional[str] = None
    taken: Optional[str] = None
    camera: Optional[str] = None
    lat: Optional[float] = None
    lon: Optional[float] = None
    mtime_ns: Optional[int] = None
    meta_notes: Optional[str] = Field(None, description="Metadata values that were unreadable and left out.")
    added_at: Optional[float] = None
    updated_at: Optional[float] = None
    duplicates: list[ItemRef] = Field(default_factory=list, description="Other items with the same content.")
    neighbours: list[Hit] = Field(default_factory=list, description="The nearest other contents.")


class ClassifyRequest(BaseModel):
    labels: list[str] = Field(..., min_length=1, max_length=MAX_RESULTS)
    templates: Literal["none", "default", "ensemble"] = "default"
    index: Optional[str] = None
    transductive: bool = Field(False, description="Classify the whole collection at once, label-free (guarded: it "
                                                  "falls back to plain zero-shot where it has little to work with).")


class ClassifyRun(BaseModel):
    id: str
    index: str
    labels: list[str]
    templates: str
    state: Literal["running", "done", "failed"]
    done: int = Field(description="Items classified so far.")
    total: int = Field(description="Items to classify.")
    counts: dict[str, int] = Field(description="Items per best label so far.")
    seconds: float
    error: Optional[str] = None
    transductive: Optional[dict[str, Any]] = Field(None, description="With transductive: whether it was used or "
                                                                     "fell back to plain zero-shot, and why.")


class LabelItem(BaseModel):
    id: int
    path: str
    score: float


class LabelPage(BaseModel):
    run: str
    label: str
    total: int = Field(description="Items whose best label this is (so far, while the run goes on).")
    offset: int
    items: list[LabelItem]


class AuditFindings(BaseModel):
    index: str
    total: int
    offset: int
    findings: list[dict[str, Any]]
    reviewed: int = 0  # of ``total``, how many have a decision
    counts: dict[str, int] = {}  # findings per type (all types)
    labels: list[str] = []  # the audited label set (what a relabel may choose)
    decisions_allowed: bool = False  # the service records decisions (--allow-decisions)


class AuditDecisionIn(BaseModel):
    id: str = Field(max_length=64, description="A finding's id (from GET /api/audit).")
    action: Literal["accept", "reject", "relabel", "drop", "undo"]
    label: Optional[str] = Field(None, max_length=1000, description="The new label (relabel only).")


class IndexInfo(BaseModel):
    name: str
    path: str
    embedded: int
    model: Optional[str]


class IngestState(BaseModel):
    state: Literal["idle", "running", "done", "failed"]
    sources: list[str] = Field(default_factory=list)
    embedded: int = 0
    summary: Optional[dict[str, int]] = None
    error: Optional[str] = None


class Health(BaseModel):
    status: Literal["ok"]
    indexes: list[str]
