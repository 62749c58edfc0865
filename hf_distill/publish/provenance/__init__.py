"""Provenance of a distilled student: what it came from (teacher, starting checkpoint, datasets: Hub ids and resolved
commits, or content hashes; licences as read at that revision), how it was trained, on what, and the hashes of the
weights, collected once at save time and written as `distillation_provenance.json`."""

from .collect import (
    collect_provenance,
    environment_info,
    non_default_config,
    provenance_sources,
    sources_gather_the_teacher,
    tokenizer_hashes,
    weight_file_hashes,
)
from .record import PROVENANCE_FILE, DatasetRecord, Provenance, ProvenanceError, SourceRecord
from .sources import (
    LICENSE_FILE_NAMES,
    cached_snapshot,
    count_tokens,
    dataset_record,
    is_hub_id,
    model_record,
    remember_local_source,
)

__all__ = [
    "LICENSE_FILE_NAMES",
    "PROVENANCE_FILE",
    "DatasetRecord",
    "Provenance",
    "ProvenanceError",
    "SourceRecord",
    "cached_snapshot",
    "collect_provenance",
    "count_tokens",
    "dataset_record",
    "environment_info",
    "is_hub_id",
    "model_record",
    "non_default_config",
    "remember_local_source",
    "provenance_sources",
    "sources_gather_the_teacher",
    "tokenizer_hashes",
    "weight_file_hashes",
]
