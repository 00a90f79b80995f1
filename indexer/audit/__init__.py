"""Dataset auditing from stored embeddings: likely mislabels, duplicates, outliers and label-set problems
(``core``), the given labels (``dataset``), duplicate grouping (``duplicates``), and its files and summary
(``report``, ``summary``). Builds on query (label embeddings); imports media and store below it."""

from .core import FINDING_TYPES, AuditOptions, AuditResult, Finding, audit
from .dataset import DatasetLabels, csv_labels, folder_labels, run_labels

__all__ = ["FINDING_TYPES", "AuditOptions", "AuditResult", "DatasetLabels", "Finding", "audit", "csv_labels",
           "folder_labels", "run_labels"]
