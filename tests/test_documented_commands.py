"""Every command shown in README.md, docs/ and the examples' docstrings runs as written.

The commands run in a scratch folder where each Hub id of the recipes (`Qwen/Qwen2.5-0.5B-Instruct`,
`trl-lib/Capybara`, ...) is a local folder at that relative path: a tiny model built from a config, or a small
dataset in the recipe's format. Nothing else of a command is changed. Commands that cannot run here (package
installs, several GPUs, placeholders such as `<recipe>`) are listed in `NOT_RUN` with the reason, and a test keeps
that list exact. The stderr of the runs is checked for third-party lines the user cannot act on.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from datasets import DatasetDict

from tests import tiny

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SCRIPTS = sorted((ROOT / "examples").glob("*.py"))
RECIPES = sorted((ROOT / "examples" / "configs").glob("*.yaml"))
MODEL_KEYS = ("model_name_or_path", "teacher_model_name_or_path", "teacher", "tokenizer")
_COMMAND_START = re.compile(r"^(python |hf-distill |torchrun |accelerate |pip |uv )")

# (pattern, reason): a documented command matching a pattern is not run here. Each pattern must match a command.
NOT_RUN = [
    (r"pip install", "installs packages (the test runs in the installed environment)"),
    (r"<[^>]+>", "a placeholder (`<recipe>`) the reader fills in"),
    (r"^accelerate launch", "several GPUs (DDP, FSDP2, ZeRO-3): tests/test_launch_examples.py launches each config "
     "of examples/accelerate/ (CPU variant, 2 processes) and docs/scaling.md's two-node command on one machine"),
    (r"^hf-distill quickstart", "the quickstart is run by tests/test_quickstart.py"),
    (r"^hf-distill benchmark .*--trust", "needs a trained student and teacher folder: "
     "tests/test_trust_push_cli.py runs `hf-distill benchmark --trust` on tiny saved models"),
    (r"^hf-distill init-student --teacher HuggingFaceTB/", "the real SmolLM2 teacher of docs/real_models.md (a Hub "
     "download); tests/test_init_student.py runs `hf-distill init-student` on tiny teachers"),
]

# Third-party stderr lines the CLI must not show: nothing in them is for the user to act on.
UNACTIONABLE = re.compile(
    r"gemm_4bit_forward|publisher trust|MatMul8bitLt|`gradient_checkpointing` is deprecated|'pin_memory'|"
    r"FutureWarning|UserWarning|DeprecationWarning"
)
_PROGRESS = re.compile(r"\d+%\||\d+/\d+ \[|it/s\]|s/it\]|examples/s\]|ba/s\]|row/s\]")


def _docstring_commands(path: Path) -> list[str]:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return _commands(line.strip() for line in doc.splitlines() if line.startswith("    "))


def _markdown_commands(path: Path) -> list[str]:
    blocks = re.findall(r"```(?:bash|sh|shell)\n(.*?)```", path.read_text(), re.S)
    return _commands(line for block in blocks for line in block.splitlines())


def _commands(lines) -> list[str]:
    """Commands of shell lines: comments dropped, `\\` continuations joined."""
    commands, pending = [], ""
    for line in lines:
        line = pending + re.sub(r"\s+#\s.*$", "", line).strip()
        if line.endswith("\\"):
            pending = line[:-1].strip() + " "
            continue
        pending = ""
        if _COMMAND_START.match(line):
            commands.append(re.sub(r"\s+", " ", line))
    return commands


def documented_commands() -> list[tuple[str, str]]:
    """(source file, command) for every command shown, in reading order (a train step follows its cache step)."""
    found = [(path.name, c) for path in DOCUMENTS for c in _markdown_commands(path)]
    found += [(path.name, c) for path in SCRIPTS for c in _docstring_commands(path)]
    return list(dict.fromkeys(found))


def _reason_not_run(command: str) -> str | None:
    return next((reason for pattern, reason in NOT_RUN if re.search(pattern, command)), None)


RUNNABLE = [(source, command) for source, command in documented_commands() if _reason_not_run(command) is None]


def test_every_documented_command_is_run_or_has_a_reason():
    commands = [command for _, command in documented_commands()]
    assert len(commands) >= 10
    for pattern, reason in NOT_RUN:
        assert any(re.search(pattern, c) for c in commands), f"stale NOT_RUN entry {pattern!r} ({reason})"
    # Every recipe but the 8-GPU ZeRO-3 one is run by a documented command.
    run_recipes = {Path(m).name for _, c in RUNNABLE for m in re.findall(r"examples/configs/\S+\.yaml", c)}
    assert run_recipes == {r.name for r in RECIPES} - {"qwen2.5-7b_from_qwen2.5-32b-zero3.yaml"}
    # each recipe with every command its docs pair it with: cache-logits, train and generate read the script recipes
    cli = {c.split(" --config ")[0] for _, c in RUNNABLE if c.startswith("hf-distill")}
    assert cli == {"hf-distill train", "hf-distill cache-logits", "hf-distill generate"}


def _hub_ids() -> dict[str, set[str]]:
    """The Hub ids the recipes name, by kind (`model` or `dataset`)."""
    ids: dict[str, set[str]] = {"model": set(), "dataset": set()}
    for recipe in RECIPES:
        keys = yaml.safe_load(recipe.read_text())
        ids["model"] |= {keys[k] for k in MODEL_KEYS if k in keys}
        ids["dataset"].add(keys["dataset_name"])
    return ids


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory, tokenizer, other_tokenizer):
    """A scratch folder holding a local folder at each Hub id's path, and the examples beside them."""
    root = tmp_path_factory.mktemp("documented")
    ids = _hub_ids()
    assert ids["model"] and all(i.count("/") == 1 for i in ids["model"] | ids["dataset"])
    for seed, model_id in enumerate(sorted(ids["model"])):
        # SmolLM2 has another tokenizer than the Qwen family, as the real ones do (recipe d crosses tokenizers).
        factory = tiny.ModelFactory(other_tokenizer if model_id.startswith("HuggingFaceTB/") else tokenizer)
        factory.save(root / model_id, "llama", hidden=32, layers=1, seed=seed)
    for dataset_id in ids["dataset"]:
        splits = {"train": tiny.messages_dataset(8, seed=1), "test": tiny.messages_dataset(4, seed=3)}
        DatasetDict(splits).save_to_disk(str(root / dataset_id))
    (root / "examples").symlink_to(ROOT / "examples")
    return root


class _Runs:
    """Each runnable command, run once on first use through bash in the scratch folder, after the earlier commands
    that use the same recipe (a `train` step needs its `cache` step's output): command -> CompletedProcess."""

    def __init__(self, folder: Path):
        self.folder, self.results = folder, {}
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), self.env["PATH"]])

    def __getitem__(self, command: str) -> subprocess.CompletedProcess:
        ordered = list(dict.fromkeys(c for _, c in RUNNABLE))  # a command shown twice runs once
        recipe = set(re.findall(r"examples/configs/\S+\.yaml", command))
        for earlier in ordered[: ordered.index(command) + 1]:
            if earlier not in self.results and (earlier == command or recipe & set(re.findall(r"\S+\.yaml", earlier))):
                self.results[earlier] = subprocess.run(
                    ["bash", "-c", earlier], cwd=self.folder, env=self.env, capture_output=True, text=True,
                    timeout=900,
                )
        return self.results[command]


@pytest.fixture(scope="module")
def runs(stand_ins):
    return _Runs(stand_ins)


def _stderr_lines(stderr: str) -> list[str]:
    """stderr without progress-bar frames (tqdm redraws with carriage returns)."""
    lines = (part.strip() for line in stderr.splitlines() for part in line.split("\r"))
    return [line for line in lines if line and not _PROGRESS.search(line)]


@pytest.mark.slow
@pytest.mark.parametrize("source, command", RUNNABLE, ids=[f"{s}: {c[:70]}" for s, c in RUNNABLE])
def test_documented_command_runs_as_written(source, command, runs, stand_ins):
    result = runs[command]
    assert result.returncode == 0, f"{source}: `{command}` failed:\n{result.stderr[-3000:]}"
    unactionable = [line for line in _stderr_lines(result.stderr) if UNACTIONABLE.search(line)]
    assert not unactionable, f"`{command}` printed lines the user cannot act on: {unactionable[:5]}"


@pytest.mark.slow
def test_train_run_prints_nothing_but_progress_to_stderr(runs):
    """A `train` run's stderr holds progress bars only: no warning from a third-party library (counted lines)."""
    train = [c for _, c in RUNNABLE if c.startswith("hf-distill train") and "0.5b_from" in c]
    result = runs[train[0]]
    frames = [part for line in result.stderr.splitlines() for part in line.split("\r") if part.strip()]
    assert len(frames) > 5  # progress bars were drawn: stderr was captured
    assert _stderr_lines(result.stderr) == []


@pytest.mark.slow
def test_8bit_recipe_prints_no_per_matmul_lines(runs):
    command = next(c for _, c in RUNNABLE if "7b-8bit" in c)
    assert runs[command].returncode == 0
    assert "MatMul8bitLt" not in runs[command].stderr
