"""The options of each `hf-distill` subcommand, as dataclasses: every field is a `--flag` (and a recipe key) whose
`help` is its documentation. Training options are `DistillationConfig` and TRL's `ModelConfig` themselves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "BenchmarkArguments",
    "CacheLogitsArguments",
    "CardArguments",
    "DatasetArguments",
    "DatasetPushArguments",
    "GenerateArguments",
    "PushArguments",
    "QuickstartArguments",
    "RowLimitArguments",
    "SpaceArguments",
    "TrainScriptArguments",
]


@dataclass
class DatasetArguments:
    """Which dataset to read: a Hub id, a folder written by `save_to_disk` (the output of `hf-distill generate` /
    `cache-logits`), or a `.json`/`.jsonl`/`.csv`/`.parquet` file."""

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Hub id, `save_to_disk` folder or data file of the dataset (TRL format: text, "
            "prompt/completion or messages)."
        },
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "Dataset configuration name (the `name` argument of `datasets.load_dataset`)."}
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on (or to read)."})
    dataset_test_split: str = field(
        default="test", metadata={"help": "Held-out split, for evaluation and benchmarks."}
    )


@dataclass
class TrainScriptArguments(DatasetArguments):
    """What `hf-distill train` does around `DistillationTrainer.train()`."""

    benchmark_after_training: bool = field(
        default=False,
        metadata={
            "help": "Benchmark the student against the teacher on the test split after training and save the "
            "report (benchmark/report.json) beside the student."
        },
    )
    benchmark_max_samples: int | None = field(
        default=200, metadata={"help": "Rows of the test split the benchmark uses (all when unset)."}
    )
    benchmark_max_new_tokens: int = field(
        default=128, metadata={"help": "Tokens the benchmark generates per example and per latency run."}
    )
    logits_dir: str | None = field(
        default=None,
        metadata={
            "help": "Train on the cached teacher logits in this folder (written by `hf-distill cache-logits "
            "--logits_dir`) instead of the train split of `dataset_name`; no teacher is loaded. The same key in a "
            "recipe drives both commands."
        },
    )


@dataclass
class QuickstartArguments:
    """`hf-distill quickstart`: the whole product on a CPU, offline, in minutes."""

    output_dir: str = field(
        default="hf-distill-quickstart",
        metadata={"help": "Folder for the student, its card, the report, provenance and the Space."},
    )
    push_to_hub: str | None = field(
        default=None,
        metadata={
            "help": "Hub repo id (`namespace/name`) to push the student to (and `<repo>-demo` Space); needs "
            "a token (HF_TOKEN or `hf auth login`)."
        },
    )
    private: bool | None = field(default=None, metadata={"help": "Create the pushed repos private."})
    preset: Literal["standard", "smoke"] = field(
        default="standard",
        metadata={
            "help": "`standard`: the sizes the README's numbers come from (<= 10 minutes on 2 CPU cores). "
            "`smoke`: tiny sizes and few steps, same code path, for tests; its numbers mean nothing."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of the dataset, the initial weights and training."})
    cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where the trained teacher is cached (default: $HF_DISTILL_CACHE, else hf_distill/ in the "
            "Hugging Face cache folder: $HF_HOME, which defaults to ~/.cache/huggingface); a second run reuses it."
        },
    )
    num_threads: int | None = field(
        default=1,
        metadata={
            "help": "torch CPU threads. The quickstart's models are too small to gain much from threads, and "
            "threads sharing busy cores slow them down more than ten-fold; 0 keeps torch's default."
        },
    )


@dataclass
class DatasetPushArguments:
    """Publishing the dataset a command writes (after a privacy scan; a dataset with secrets is refused)."""

    push_to_hub: str | None = field(
        default=None,
        metadata={"help": "Hub dataset repo id (`namespace/name`) to publish the result to, in one commit after a "
                          "privacy scan; needs a token (HF_TOKEN or `hf auth login`)."},
    )
    allow_private_data: bool = field(
        default=False,
        metadata={"help": "Publish even if the privacy scan finds secrets (API keys, tokens, private keys)."},
    )


@dataclass
class RowLimitArguments:
    """A quick look: the first rows of a dataset only."""

    max_rows: int | None = field(
        default=None,
        metadata={"help": "Use only the first N rows of the split, for a quick look before the full run."},
    )


@dataclass
class GenerateArguments(RowLimitArguments, DatasetPushArguments, DatasetArguments):
    """`hf-distill generate`: the teacher writes completions for the dataset's prompts (sequence-level data)."""

    teacher: str | None = field(default=None, metadata={"help": "Hub id or local path of the teacher (required)."})
    generations_dir: str | None = field(
        default=None,
        metadata={"help": "Folder for the generated dataset (required, or --output_dir). A recipe shared with `train` "
                          "uses this key, as its `output_dir` is the student's folder."},
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Folder for the generated dataset when --generations_dir is unset."}
    )
    max_new_tokens: int = field(default=256, metadata={"help": "Completion length limit."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature; 0 decodes greedily."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold."})
    num_samples: int = field(default=1, metadata={"help": "Completions per prompt."})
    batch_size: int = field(default=8, metadata={"help": "Sequences per `generate` call (left-padded)."})
    backend: Literal["transformers", "vllm"] = field(
        default="transformers",
        metadata={"help": '`vllm` needs vLLM: `python -m pip install -e ".[vllm]"` in a clone of hf-distill.'},
    )
    seed: int = field(
        default=42,
        metadata={"help": "Seed of the run; each sequence's seed derives from it. The default is the training seed's "
                          "(42), so a recipe without `seed` generates the same text through the script and the CLI."},
    )
    shard_size: int = field(default=1000, metadata={"help": "Input rows per shard (unit of resuming and of work)."})
    teacher_model_init_kwargs: str | None = field(
        default=None,
        metadata={
            "help": 'JSON object of `from_pretrained` arguments for the teacher, e.g. \'{"dtype": "bfloat16"}\'.'
        },
    )


@dataclass
class CacheLogitsArguments(RowLimitArguments, DatasetPushArguments, DatasetArguments):
    """`hf-distill cache-logits`: the teacher scores the dataset once; its top-k log-probabilities are stored so that
    training needs no teacher. Run under `torchrun`/`accelerate launch` to split the work."""

    teacher: str | None = field(default=None, metadata={"help": "Hub id or local path of the teacher (required)."})
    tokenizer: str | None = field(
        default=None, metadata={"help": "Tokenizer to tokenize with (the student's); defaults to the teacher's."}
    )
    student_tokenizer: str | None = field(
        default=None,
        metadata={"help": "Hub id or folder of the student's tokenizer when it differs from the teacher's: the "
                          "teacher reads its own tokenization, matched by text to the student's (train with "
                          "--cross_tokenizer)."},
    )
    logits_dir: str | None = field(
        default=None,
        metadata={"help": "Folder for the cached dataset (required, or --output_dir). A recipe shared with `train` "
                          "uses this key (train reads it back), as its `output_dir` is the student's folder."},
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Folder for the cached dataset when --logits_dir is unset."}
    )
    top_k: int = field(default=64, metadata={"help": "Teacher entries kept per position."})
    batch_size: int = field(default=8, metadata={"help": "Rows per teacher forward."})
    max_length: int | None = field(
        default=None, metadata={"help": "Truncate rows to this many tokens (use training's `max_length`)."}
    )
    shard_size: int = field(default=1000, metadata={"help": "Rows per shard (unit of resuming and of work)."})
    teacher_model_init_kwargs: str | None = field(
        default=None,
        metadata={
            "help": "JSON object of `from_pretrained` arguments for the teacher, e.g. "
            '\'{"quantization_config": {"load_in_8bit": true}}\'.'
        },
    )


@dataclass
class BenchmarkArguments(DatasetArguments):
    """`hf-distill benchmark`: student vs teacher (and a baseline) on held-out data: quality, fidelity, cost."""

    student: str | None = field(default=None, metadata={"help": "Hub id or folder of the student (required)."})
    teacher: str | None = field(default=None, metadata={"help": "Hub id or folder of the teacher."})
    baseline: str | None = field(
        default=None, metadata={"help": "Hub id or folder of a baseline, e.g. the same student trained without KD."}
    )
    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder for report.json, report.md and the plot (default: <student>/benchmark when the "
            "student is a folder)."
        },
    )
    max_new_tokens: int = field(default=64, metadata={"help": "Generated tokens per example and per latency run."})
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8], metadata={"help": "Batch sizes timed."})
    num_latency_runs: int = field(default=5, metadata={"help": "Timed runs per batch size (after a warm-up)."})
    task_metrics: list[str] = field(
        default_factory=lambda: ["exact_match", "token_f1", "rouge_l"],
        metadata={"help": "Metrics of generated completions: exact_match, token_f1, rouge_l, chrf, bleu."},
    )
    max_samples: int | None = field(default=None, metadata={"help": "Use only the first rows of the split."})
    eval_batch_size: int = field(default=8, metadata={"help": "Batch size of scoring and generation."})
    device: str | None = field(default=None, metadata={"help": "Device to run on (default: first GPU, else CPU)."})
    trust: bool = field(default=False, metadata={"help": "Also measure leakage, robustness, safety agreement and "
                                                 "serving cost (docs/trust.md); writes risk_record.json."})
    trust_price_per_hour: float | None = field(default=None, metadata={"help": "Serving price per hour (--trust)."})
    trust_extraction_rows: int = field(default=0, metadata={"help": "Train-split rows for verbatim extraction."})


@dataclass
class CardArguments:
    """`hf-distill card`: write the model card (README.md) of a saved student from its provenance and report."""

    folder: str | None = field(
        default=None,
        metadata={"help": "The saved student: weights, tokenizer and distillation_provenance.json (required)."},
    )
    repo_id: str | None = field(default=None, metadata={"help": "Hub id the card is for (default: the folder name)."})
    report: str | None = field(
        default=None, metadata={"help": "Benchmark report JSON (default: <folder>/benchmark/report.json if present)."}
    )
    student_license: str | None = field(
        default=None, metadata={"help": "Licence to publish under (default: chosen by the licence rules)."}
    )
    output: str | None = field(
        default=None, metadata={"help": "Where to write the card (default: <folder>/README.md)."}
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "Replace an existing README.md that hf-distill did not write (a card it wrote is replaced, "
                          "and the command says so)."},
    )


@dataclass
class PushArguments:
    """`hf-distill push`: publish a saved student, its card, licence files, provenance and report in one commit."""

    folder: str | None = field(default=None, metadata={"help": "The saved student folder (required)."})
    repo_id: str | None = field(default=None, metadata={"help": "`namespace/name` on the Hub (required)."})
    private: bool | None = field(default=None, metadata={"help": "Visibility of a newly created repo."})
    revision: str | None = field(default=None, metadata={"help": "Branch to push to (default: main)."})
    commit_message: str | None = field(default=None, metadata={"help": "Commit message."})
    mode: Literal["full", "adapter", "merged"] | None = field(
        default=None,
        metadata={"help": "full weights, a PEFT adapter, or the adapter merged into its base (default: detected)."},
    )
    allow_license_conflict: bool = field(
        default=False, metadata={"help": "Publish despite a licence conflict; the card then says so."}
    )
    student_license: str | None = field(default=None, metadata={"help": "Licence to publish under."})
    teacher_license: str | None = field(
        default=None, metadata={"help": "The teacher's licence, when its card lacks it."}
    )
    token: str | None = field(
        default=None, metadata={"help": "Hub token (default: HF_TOKEN or the saved login; prefer those)."}
    )


@dataclass
class SpaceArguments:
    """`hf-distill space`: write (and with --push, upload) a Gradio Space comparing the student with its teacher.
    Field names are those of `hf_distill.hub.create_space`."""

    student: str | None = field(default=None, metadata={"help": "Hub id or local folder of the student (required)."})
    teacher: str | None = field(default=None, metadata={"help": "Hub id or local folder of the teacher."})
    space_id: str | None = field(
        default=None, metadata={"help": "`namespace/name` of the Space (needed with --push)."}
    )
    output_dir: str | None = field(default=None, metadata={"help": "Folder to write the Space into (required)."})
    hardware: str = field(default="cpu-basic", metadata={"help": "Space hardware flavour (`zero-a10g` is ZeroGPU)."})
    private: bool | None = field(default=None, metadata={"help": "A private Space."})
    push: bool = field(default=False, metadata={"help": "Create the Space and upload the folder in one commit."})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: HF_TOKEN or the saved login)."})
    title: str | None = field(default=None, metadata={"help": "Space title (default: '<student> vs <teacher>')."})
    license: str | None = field(default=None, metadata={"help": "Licence id of the Space (default: the card's)."})
    benchmark: str | None = field(default=None, metadata={"help": "Benchmark report (.json or .md) to show."})
    max_new_tokens: int | None = field(default=None, metadata={"help": "Default new tokens in the app."})
