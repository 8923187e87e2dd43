"""Dataset audit: how often do artifacts occur, and do they predict the label (a shortcut waiting to be learned)?

Split by job: :mod:`.scan` (run the detectors over a dataset, count), :mod:`.statistics` (when an artifact is
label-predictive), :mod:`.report` (the count and report objects), :mod:`.items` (which items, read how) and
:mod:`.cache` (the on-disk cache of the counts).
"""

from .cache import dataset_files, dataset_fingerprint, dataset_identity, default_cache_dir
from .items import eval_dataset, sample_indices
from .report import ANNOTATED, ArtifactAssociation, AuditCounts, AuditReport, merge_counts, to_jsonable
from .scan import add_skipped, audit_datamodule, audit_dataset, audit_sample, count_dataset, count_sample
from .statistics import (
    ALPHA,
    MIN_ODDS_RATIO,
    MIN_SUPPORT,
    association_from_counts,
    association_table,
    report_from_counts,
)

__all__ = [
    "ALPHA",
    "ANNOTATED",
    "MIN_ODDS_RATIO",
    "MIN_SUPPORT",
    "ArtifactAssociation",
    "AuditCounts",
    "AuditReport",
    "audit_dataset",
    "audit_datamodule",
    "add_skipped",
    "audit_sample",
    "association_from_counts",
    "count_dataset",
    "count_sample",
    "dataset_files",
    "dataset_fingerprint",
    "dataset_identity",
    "default_cache_dir",
    "eval_dataset",
    "association_table",
    "merge_counts",
    "report_from_counts",
    "sample_indices",
    "to_jsonable",
]
