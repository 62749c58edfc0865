"""Provenance of a distilled student: what it came from (teacher, starting checkpoint, datasets: Hub ids and resolved
commits, or content hashes; licences as read at that revision), how it was trained, on what, and the hashes of the
weights, collected once at save time and written as `distillation_provenance.json`."""

# Names marked F401 are the package's own helpers: importable here as before, not in `__all__`.
from .collect import (
    collect_provenance,
    environment_info,  # noqa: F401
    non_default_config,  # noqa: F401
    provenance_sources,  # noqa: F401
    sources_gather_the_teacher,  # noqa: F401
    tokenizer_hashes,  # noqa: F401
    weight_file_hashes,  # noqa: F401
)
from .record import PROVENANCE_FILE, DatasetRecord, Provenance, ProvenanceError, SourceRecord
from .sources import (
    LICENSE_FILE_NAMES,  # noqa: F401
    cached_snapshot,  # noqa: F401
    count_tokens,  # noqa: F401
    dataset_record,  # noqa: F401
    is_hub_id,  # noqa: F401
    model_record,  # noqa: F401
    remember_local_source,  # noqa: F401
)

__all__ = ["PROVENANCE_FILE", "DatasetRecord", "Provenance", "ProvenanceError", "SourceRecord", "collect_provenance"]
