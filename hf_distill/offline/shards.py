"""Sharded, resumable, multi-process dataset writing: the machinery under `cache_teacher_logits` and
`generate_completions`, usable by any job that maps a dataset row-range by row-range into a new dataset.

The input rows are cut into fixed shards of `shard_size` rows. Rank r of W processes (`torchrun`, `accelerate launch`)
writes shards r, r + W, r + 2W, ... Each shard is saved with `Dataset.save_to_disk` into a temporary folder and moved
into place with one atomic rename; then a sidecar JSON records its row count, a sha256 of the input rows it was made
from and a sha256 of every file. A shard counts as finished only when its sidecar exists and every checksum verifies,
so a run killed at any instant resumes where it stopped and never reads a half-written shard. A shard whose sidecar
exists but whose files no longer match it was damaged after it was written (disk error, an edit, a partial copy):
that raises [`CorruptShardError`] naming the shard rather than being silently recomputed or read. When every shard
is finished, rank 0 concatenates them in order, so the result does not depend on how many processes wrote them.
The finished dataset's files are checksummed in the run manifest too, and verified when a later run reuses it.

Layout of `output_dir` while a run is in progress:

```
output_dir/shards/settings.json          what the run computes (a resumed run must match it)
output_dir/shards/shard-00000/           Dataset.save_to_disk of what rows [0, shard_size) gave
output_dir/shards/shard-00000.json       {"num_rows", "input_sha256", "files": {name: sha256}}
```
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch.distributed as dist
from datasets import Dataset
from tqdm.auto import tqdm

from ..errors import HfDistillError
from ..fingerprints import file_sha256

__all__ = [
    "CorruptShardError",
    "ProcessGroup",
    "ResumeError",
    "RowLimitError",
    "ShardSizeError",
    "RunManifest",
    "Shard",
    "ShardStore",
    "atomic_write_text",
    "first_rows",
    "rows_sha256",
    "run_sharded",
]


class ResumeError(HfDistillError, ValueError):
    """`output_dir` holds a run made with other settings or other input rows."""


class CorruptShardError(ResumeError):
    """A finished shard (or the finished dataset) no longer matches the checksums recorded when it was written."""


class ShardSizeError(HfDistillError, ValueError):
    """A `shard_size` (--shard_size) below 1."""


class RowLimitError(HfDistillError, ValueError):
    """`max_rows` is not a positive number of rows."""


def first_rows(dataset: Dataset, max_rows: int | None) -> Dataset:
    """The first `max_rows` rows of `dataset` (all of them when `None`): a quick look before the full run."""
    if max_rows is None:
        return dataset
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise RowLimitError(
            f"`max_rows` (--max_rows) is {max_rows!r}; pass a positive number of rows, or leave it unset for all."
        )
    return dataset.select(range(min(max_rows, len(dataset))))


def check_shard_size(shard_size: int) -> None:
    """Refuse a `shard_size` below 1 (called by the offline runs before they load a teacher)."""
    if shard_size < 1:
        raise ShardSizeError(f"`shard_size` is {shard_size}; it must be >= 1 (rows per shard, e.g. 1000).")


@dataclass(frozen=True)
class Shard:
    """Rows `[start, stop)` of the input, written as shard number `index`."""

    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}"


@dataclass(frozen=True)
class ProcessGroup:
    """This process's rank among the processes of the run, from `torch.distributed` or accelerate's `PartialState`
    (which sets up the process group that `torchrun` / `accelerate launch` describe in the environment)."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def current(cls) -> ProcessGroup:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import PartialState

            state = PartialState()
            return cls(state.process_index, state.num_processes)
        return cls()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def rows_sha256(dataset: Dataset) -> str:
    """sha256 of the rows' content (column by column, JSON), to recognise the same input on resume."""
    digest = hashlib.sha256()
    for column in sorted(dataset.column_names):
        digest.update(json.dumps([column, dataset[column]], sort_keys=True, default=str).encode())
    return digest.hexdigest()


class ShardStore:
    """The shards of one run under `output_dir/shards/`.

    Args:
        output_dir (`str` or `Path`): the run's output folder.
        num_rows (`int`): rows of the input.
        shard_size (`int`): rows per shard (the last one may be shorter).
        settings (`dict`): JSON-serialisable description of what the run computes; resuming with other settings
            raises [`ResumeError`].

    Example:

    ```python
    >>> store = ShardStore("out", num_rows=len(source), shard_size=4, settings={"job": "upper"})
    >>> for shard in store.shards:
    ...     rows = source.select(range(shard.start, shard.stop))
    ...     if not store.is_finished(shard, rows_sha256(rows)):
    ...         store.write(shard, rows.map(lambda r: {"text": r["text"].upper()}), input_sha256=rows_sha256(rows))
    >>> result = store.assemble()

    [`run_sharded`] does this across processes.
    ```
    """

    def __init__(self, output_dir: str | os.PathLike, *, num_rows: int, shard_size: int, settings: dict):
        check_shard_size(shard_size)
        self.root = Path(output_dir) / "shards"
        self.settings = json.loads(json.dumps(settings, sort_keys=True, default=str))
        self.shards = [
            Shard(index, start, min(start + shard_size, num_rows))
            for index, start in enumerate(range(0, num_rows, shard_size))
        ]

    def check_settings(self, group: ProcessGroup) -> None:
        """Record the settings (rank 0) or compare them with the recorded ones; raises [`ResumeError`]."""
        path = self.root / "settings.json"
        if path.exists():
            recorded = json.loads(path.read_text())
            if recorded != self.settings:
                keys = set(recorded) | set(self.settings)
                changed = sorted(k for k in keys if recorded.get(k) != self.settings.get(k))
                raise ResumeError(
                    f"{self.root.parent} holds an unfinished run made with other settings (differing: "
                    f"{', '.join(changed)}). Use another `output_dir`, or delete {self.root} to start over."
                )
        elif group.is_main:
            atomic_write_text(path, json.dumps(self.settings, sort_keys=True, indent=2))

    def is_finished(self, shard: Shard, input_sha256: str | None = None) -> bool:
        """Whether `shard` was written completely (its sidecar exists). Raises [`ResumeError`] when it was made from
        other input rows and [`CorruptShardError`] when its files no longer match their recorded checksums."""
        sidecar = self._sidecar(shard)
        if not sidecar.exists():
            return False  # never written, or killed before the sidecar: (re)write it
        record = json.loads(sidecar.read_text())
        if input_sha256 is not None and record["input_sha256"] != input_sha256:
            raise ResumeError(
                f"Shard {shard.index} (rows {shard.start}-{shard.stop - 1}) in {self.root} was made from other input "
                f"rows. Use another `output_dir`, or delete {self.root} to start over."
            )
        self._verify(shard, record)
        return True

    def write(self, shard: Shard, dataset: Dataset, *, input_sha256: str) -> None:
        """Save `dataset` as `shard` atomically, then its checksummed sidecar."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{shard.name}."))
        dataset.save_to_disk(str(tmp))
        final = self.root / shard.name
        if final.exists():  # a shard dir without a valid sidecar: a killed earlier attempt
            shutil.rmtree(final)
        os.replace(tmp, final)
        files = {path.name: file_sha256(path, reuse=False) for path in sorted(final.iterdir())}
        record = {"num_rows": len(dataset), "input_sha256": input_sha256, "files": files}
        atomic_write_text(self._sidecar(shard), json.dumps(record, sort_keys=True, indent=2))

    def assemble(self) -> Dataset:
        """All shards, verified and concatenated in row order (memory-mapped, nothing copied)."""
        parts = []
        for shard in self.shards:
            if not self.is_finished(shard):
                raise ResumeError(f"Shard {shard.index} in {self.root} is missing; re-run to write it.")
            parts.append(datasets.load_from_disk(str(self.root / shard.name)))
        return datasets.concatenate_datasets(parts) if parts else None

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def _sidecar(self, shard: Shard) -> Path:
        return self.root / f"{shard.name}.json"

    def _verify(self, shard: Shard, record: dict) -> None:
        folder = self.root / shard.name
        damage = _checksum_mismatch(folder, record["files"])
        if damage:
            raise CorruptShardError(
                f"Shard {shard.index} (rows {shard.start}-{shard.stop - 1}) at {folder} is corrupt: {damage}. It was "
                f"damaged after it was written. Delete {folder} and {self._sidecar(shard)} and re-run to recompute "
                "just that shard."
            )


def _checksum_mismatch(folder: Path, files: dict[str, str]) -> str | None:
    """What differs between `folder` and the `{file name: sha256}` recorded for it, or None when nothing does."""
    if not folder.is_dir():
        return "its folder is missing"
    present = {path.name for path in folder.iterdir()}
    if missing := sorted(set(files) - present):
        return f"{', '.join(missing)} missing"
    for name, sha in files.items():
        if file_sha256(folder / name, reuse=False) != sha:
            return f"{name} does not match its sha256 recorded at write time"
    return None


@dataclass(frozen=True)
class RunManifest:
    """`output_dir/hf_distill_run.json`: written last, when the assembled dataset is saved. A run that finds it with
    the same settings returns the saved dataset without recomputing anything."""

    kind: str
    settings: dict

    @property
    def file_name(self) -> str:
        return "hf_distill_run.json"

    def load_finished(self, output_dir: str | os.PathLike) -> Dataset | None:
        path = Path(output_dir) / self.file_name
        if not path.exists():
            return None
        recorded = json.loads(path.read_text())
        settings = json.loads(json.dumps(self.settings, sort_keys=True, default=str))
        if recorded.get("kind") != self.kind or recorded.get("settings") != settings:
            raise ResumeError(
                f"{output_dir} already holds a finished {recorded.get('kind')} dataset made with other settings. "
                "Use another `output_dir`, or delete it to start over."
            )
        damage = _checksum_mismatch(Path(output_dir), recorded.get("files", {}))
        if damage:
            raise CorruptShardError(
                f"The finished {self.kind} dataset in {output_dir} is corrupt: {damage}. Delete {output_dir} and "
                "re-run to rebuild it."
            )
        return datasets.load_from_disk(str(output_dir))

    def save(self, dataset: Dataset, output_dir: str | os.PathLike, *, store: ShardStore) -> Dataset:
        """Save the assembled dataset into `output_dir`, then the manifest (with the sha256 of every file the save
        wrote), then drop the shards."""
        dataset.save_to_disk(str(output_dir))
        folder = Path(output_dir)
        written = json.loads((folder / "state.json").read_text())
        names = [entry["filename"] for entry in written["_data_files"]] + ["state.json", "dataset_info.json"]
        files = {name: file_sha256(folder / name, reuse=False) for name in names}
        record = {"kind": self.kind, "settings": self.settings, "files": files}
        atomic_write_text(folder / self.file_name, json.dumps(record, sort_keys=True, default=str, indent=2))
        store.remove()
        return datasets.load_from_disk(str(output_dir))


def run_sharded(
    source: Dataset,
    output_dir: str | os.PathLike,
    *,
    kind: str,
    settings: dict,
    shard_size: int,
    work: Callable[[Dataset, Shard], Dataset],
    finalize: Callable[[Dataset], Dataset] | None = None,
    group: ProcessGroup | None = None,
) -> Dataset:
    """Map `source` shard by shard with `work(rows, shard)` on every process, resumably, and return the assembled
    dataset saved in `output_dir` (identical whatever the number of processes).

    `finalize(dataset)` runs once, on rank 0, before the dataset is saved (e.g. to set its description or write a
    card into `output_dir`).
    """
    manifest = RunManifest(kind, settings)
    finished = manifest.load_finished(output_dir)
    if finished is not None:
        return finished
    group = group or ProcessGroup.current()
    store = ShardStore(output_dir, num_rows=len(source), shard_size=shard_size, settings=settings)
    store.check_settings(group)
    my_shards = store.shards[group.rank :: group.world_size]
    # One bar on the main process, counted in rows; resumed shards advance it at once.
    with tqdm(
        total=sum(shard.stop - shard.start for shard in my_shards), desc=kind, unit="row", disable=not group.is_main
    ) as progress:
        for shard in my_shards:
            rows = source.select(range(shard.start, shard.stop))
            input_sha256 = rows_sha256(rows)
            if not store.is_finished(shard, input_sha256):
                store.write(shard, work(rows, shard), input_sha256=input_sha256)
            progress.update(shard.stop - shard.start)
    group.barrier()
    if group.is_main:
        dataset = store.assemble()
        manifest.save(finalize(dataset) if finalize is not None else dataset, output_dir, store=store)
    group.barrier()
    return datasets.load_from_disk(str(output_dir))
