"""Writes the Space folder: `app.py`, `requirements.txt`, `README.md`, `space_config.json` and `benchmark.md`."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import SpaceCard

from . import app_template

APP_TEMPLATE = Path(app_template.__file__)


@dataclass
class SpaceFiles:
    """The contents of a Space folder, before writing.

    Args:
        readme (`SpaceCard`): `README.md`.
        requirements (`str`): `requirements.txt`.
        config (`dict`): `space_config.json`, the app's defaults (student, teacher, title, max_new_tokens).
        benchmark (`str`, *optional*): `benchmark.md`, the table the app shows.
    """

    readme: SpaceCard
    requirements: str
    config: dict
    benchmark: str | None = None

    def contents(self) -> dict[str, str]:
        """File name -> text, `app.py` (a verbatim copy of `hf_distill/space/app_template.py`) first."""
        files = {
            "app.py": APP_TEMPLATE.read_text(encoding="utf-8"),
            "requirements.txt": self.requirements,
            "README.md": str(self.readme),
            app_template.CONFIG_FILE: json.dumps(self.config, indent=2) + "\n",
        }
        if self.benchmark:
            files[app_template.BENCHMARK_FILE] = self.benchmark.rstrip() + "\n"
        return files


def _write_atomically(path: Path, text: str) -> None:
    """Write beside the target, then rename: a crash never leaves a half-written file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_space_folder(files: SpaceFiles, output_dir: str | Path) -> list[str]:
    """Writes the files into `output_dir` (created if needed); a stale `benchmark.md` from an earlier run is removed.

    Returns:
        `list[str]`: The names written, in writing order.
    """
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    contents = files.contents()
    for name, text in contents.items():
        _write_atomically(folder / name, text)
    if app_template.BENCHMARK_FILE not in contents:
        (folder / app_template.BENCHMARK_FILE).unlink(missing_ok=True)
    return list(contents)
