"""The model card of a distilled student: metadata from explicit `ModelCardData` keys, text from the Jinja
template `model_cards/student_card.md.jinja`, and the local checks run before any upload."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Mapping
from typing import Any, Literal

import jinja2
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData, constants

from .. import _version
from ..benchmark.trust.card import trust_card_section
from ..errors import HfDistillError
from ..templates import MODEL_CARDS_DIR
from .licenses import HUB_LICENSE_IDS, LICENSE_RULES, LicenseVerdict
from .provenance import DatasetRecord, Provenance, SourceRecord

logger = logging.getLogger(__name__)

__all__ = [
    "ALLOWED_METADATA_KEYS",
    "CardError",
    "EVAL_RESULTS_DIR",
    "PLOT_PATH",
    "build_model_card",
    "check_card",
    "duty_lines",
    "eval_results_files",
    "release_year",
]

TEMPLATE_DIR = MODEL_CARDS_DIR
TEMPLATE_NAME = "student_card.md.jinja"
PLOT_PATH = "benchmark/student_vs_teacher.png"
EVAL_RESULTS_DIR = ".eval_results"
PushMode = Literal["full", "adapter", "merged"]

# Keys a caller may add through `extra_metadata` (everything else is set from provenance, report and verdict).
EXTRA_METADATA_KEYS = frozenset(
    {"language", "tags", "thumbnail", "widget", "inference", "new_version", "metrics", "extra_gated_prompt",
     "extra_gated_fields"}
)
ALLOWED_METADATA_KEYS = EXTRA_METADATA_KEYS | {
    "license", "license_name", "license_link", "base_model", "base_model_relation", "teacher_model", "datasets",
    "library_name", "pipeline_tag", "model-index", "co2_eq_emissions", "model_name",
}
_REQUIRED_KEYS = ("license", "library_name", "pipeline_tag", "tags")
_PATH_LIKE = re.compile(r"^(?:[./~]|[A-Za-z]:[\\/])|\\|//|/.*/")
_HUB_DATASET_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(?:/[\w.-]+)?$")

_CITATIONS = {
    "hf_distill": "@software{hf_distill,\n  title  = {hf\\_distill: distil LLMs on the Hugging Face stack},\n"
    "  author = {hf\\_distill contributors},\n  year   = {{year}},\n  note   = {version {version}}\n}",
    "hinton": "@article{hinton2015distilling,\n  title   = {Distilling the Knowledge in a Neural Network},\n"
    "  author  = {Hinton, Geoffrey and Vinyals, Oriol and Dean, Jeff},\n"
    "  journal = {arXiv preprint arXiv:1503.02531},\n"
    "  year    = {2015}\n}",
    "jsd": "@inproceedings{agarwal2024onpolicy,\n  title     = {On-Policy Distillation of Language Models: Learning "
    "from Self-Generated Mistakes},\n  author    = {Agarwal, Rishabh and Vieillard, Nino and Zhou, Yongchao and "
    "Stanczyk, Piotr and Garea, Sabela Ramos and Geist, Matthieu and Bachem, Olivier},\n"
    "  booktitle = {ICLR},\n  year      = {2024}\n}",
    "reverse_kl": "@inproceedings{gu2024minillm,\n  title     = {MiniLLM: Knowledge Distillation of Large Language "
    "Models},\n  author    = {Gu, Yuxian and Dong, Li and Wei, Furu and Huang, Minlie},\n  booktitle = {ICLR},\n"
    "  year      = {2024}\n}",
    "skew": "@inproceedings{ko2024distillm,\n  title     = {DistiLLM: Towards Streamlined Distillation for Large "
    "Language Models},\n  author    = {Ko, Jongwoo and Kim, Sungnyun and Chen, Tianyi and Yun, Se-Young},\n"
    "  booktitle = {ICML},\n  year      = {2024}\n}",
    "tvd": "@inproceedings{wen2023fdivergence,\n  title     = {f-Divergence Minimization for Sequence-Level Knowledge "
    "Distillation},\n  author    = {Wen, Yuqiao and Li, Zichao and Du, Wenyu and Mou, Lili},\n  booktitle = {ACL},\n"
    "  year      = {2023}\n}",
    "trl": "@software{vonwerra2020trl,\n  title  = {{TRL: Transformer Reinforcement Learning}},\n"
    "  author = {von Werra, "
    "Leandro and Belkada, Younes and Tunstall, Lewis and Beeching, Edward and Thrush, Tristan and Lambert, Nathan and "
    "Huang, Shengyi and Rasul, Kashif and Gallou{\\'e}dec, Quentin},\n  year   = {2020},\n"
    "  url    = {https://github.com/huggingface/trl}\n}",
}
_DIVERGENCE_CITATION = {"jsd": "jsd", "reverse_kl": "reverse_kl", "skew_forward_kl": "skew", "skew_reverse_kl": "skew",
                        "tvd": "tvd"}


class CardError(HfDistillError, ValueError):
    """The model card fails a local check (metadata that the Hub would reject or that would mislead)."""


# -- metadata --------------------------------------------------------------------------------------------------------


def _hub_id(record: SourceRecord | None) -> str | None:
    return record.repo_id if record is not None and record.kind == "hub" else None


def _co2(value: Mapping[str, Any] | float | None, provenance: Provenance) -> dict[str, Any] | None:
    """The Hub's `co2_eq_emissions` metadata: grams emitted, how they were measured, `training_type: distillation`."""
    if value is None:
        return None
    data = {"emissions": float(value), "source": "user-provided"} if isinstance(value, (int, float)) else dict(value)
    if "emissions" not in data:
        raise CardError("`co2_eq_emissions` needs an `emissions` value in grams, e.g. {'emissions': 1200.0}.")
    data.setdefault("training_type", "distillation")
    accelerators = provenance.hardware.get("accelerators") or []
    data.setdefault("hardware_used", ", ".join(a["name"] for a in accelerators) or provenance.hardware.get("cpu"))
    return {k: v for k, v in data.items() if v is not None}


def _card_data(
    provenance: Provenance,
    verdict: LicenseVerdict,
    *,
    mode: PushMode,
    model_name: str,
    eval_results: list,
    co2_eq_emissions,
    extra_metadata: Mapping[str, Any],
) -> ModelCardData:
    base, teacher = _hub_id(provenance.base_model), _hub_id(provenance.teacher)
    init = provenance.base_model.details.get("student_init") if provenance.base_model else None
    if base is None and teacher and init and init.get("teacher") == teacher:
        base = teacher  # started as `init_student(teacher)`: the weights derive from the teacher's
    divergence = provenance.config.get("divergence", "forward_kl")
    tags = ["distillation", "knowledge-distillation", "hf-distill", divergence.replace("_", "-")]
    if provenance.cross_tokenizer:
        tags += ["cross-tokenizer", f"cross-tokenizer-{provenance.cross_tokenizer.get('method')}"]
    if teacher:
        tags.append(f"teacher:{teacher}")
    if mode == "adapter":
        tags += ["peft", "lora"]
    tags += list(extra_metadata.get("tags", []))
    extras = {k: v for k, v in extra_metadata.items() if k != "tags"}
    datasets = list(dict.fromkeys(d.repo_id for d in provenance.datasets if _hub_id(d) and d.split == "train"))
    data = ModelCardData(
        **verdict.license_metadata,
        base_model=base,
        datasets=datasets or None,
        library_name="peft" if mode == "adapter" else "transformers",
        pipeline_tag="text-generation",
        tags=tags,
        model_name=model_name if eval_results else None,
        eval_results=eval_results or None,
        **extras,
    )
    if base:
        data.base_model_relation = "adapter" if mode == "adapter" else "finetune"
    if teacher:
        data.teacher_model = {"id": teacher, "revision": provenance.teacher.revision}
    co2 = _co2(co2_eq_emissions, provenance)
    if co2 is not None:
        data.co2_eq_emissions = co2
    return data


def _hub_eval_results(results: list[EvalResult]) -> list[EvalResult]:
    """`model-index` entries as the spec defines them: `dataset.type` is a Hub dataset id (`"custom"` only when there
    is none), and lm-eval's `num_fewshot` goes to the metric's `args` (`dataset.args` are `load_dataset()` arguments).
    """
    fixed = []
    for result in results:
        dataset_type = result.dataset_type
        if not dataset_type or _looks_like_path(dataset_type) or not _HUB_DATASET_ID.match(dataset_type):
            dataset_type = "custom"
        dataset_args, metric_args = dict(result.dataset_args or {}), dict(result.metric_args or {})
        if "num_fewshot" in dataset_args:
            metric_args["num_fewshot"] = dataset_args.pop("num_fewshot")
        fixed.append(dataclasses.replace(result, dataset_type=dataset_type, dataset_args=dataset_args or None,
                                         metric_args=metric_args or None))
    return fixed


def eval_results_files(card: ModelCard, repo_id: str) -> dict[str, str]:
    """The Hub's `.eval_results/<dataset>.yaml` files beside the card: for each Hub dataset, a YAML list of
    `{dataset: {id, task_id}, value, source: {url, name}, notes}`. Results on data without a Hub id (`"custom"`)
    stay in `model-index` only: a leaderboard needs the dataset's id."""
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for result in card.data.eval_results or []:
        if result.dataset_type == "custom":
            continue
        task = result.task_name or (result.dataset_name if result.dataset_name != result.dataset_type else None)
        settings = {**(result.dataset_args or {}), **(result.metric_args or {})}
        notes = ", ".join([result.metric_name or result.metric_type] + [f"{k}={v}" for k, v in settings.items()]
                          + ([f"split {result.dataset_split}"] if result.dataset_split else []))
        by_dataset.setdefault(result.dataset_type, []).append({
            "dataset": {"id": result.dataset_type, "task_id": task or result.metric_type},
            "value": result.metric_value,
            "source": {"url": f"{constants.ENDPOINT}/{repo_id}", "name": "hf_distill benchmark (self-reported)"},
            "notes": notes,
        })
    return {
        f"{EVAL_RESULTS_DIR}/{re.sub(r'[^a-z0-9_.-]+', '_', dataset_id.lower())}.yaml":
        yaml.safe_dump(entries, sort_keys=False, allow_unicode=True)
        for dataset_id, entries in by_dataset.items()
    }


# -- body ------------------------------------------------------------------------------------------------------------


def _link(record: SourceRecord | None, repo_type: str = "model") -> str:
    if record is None:
        return "an unknown source"
    if record.kind == "hub":
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        revision = f" (revision `{record.revision[:12]}`)" if record.revision else ""
        return f"[{record.repo_id}]({constants.ENDPOINT}/{prefix}{record.repo_id}){revision}"
    digest = f", content SHA-256 `{record.content_sha256[:16]}…`" if record.content_sha256 else ""
    return f"`{record.name}` ({record.kind}{digest})"


def _size(num_parameters: int | None) -> str:
    if not num_parameters:
        return "?-parameter"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if num_parameters >= scale:
            return f"{num_parameters / scale:.3g}{unit}-parameter"
    return f"{num_parameters}-parameter"


def _starting_point(provenance: Provenance) -> str:
    if provenance.base_model is None:
        return "none (from scratch)"
    init = provenance.base_model.details.get("student_init")
    if init:
        return (f"{_link(provenance.base_model)}: `init_student` copy of teacher layers `{init.get('layer_map')}` "
                f"(strategy `{init.get('strategy')}`)")
    return _link(provenance.base_model)


def _recipe(provenance: Provenance) -> tuple[str, list[tuple[str, str]]]:
    """A one-line summary of the loss and the recipe table."""
    config, student = provenance.config, provenance.student
    divergence = config.get("divergence", "forward_kl")
    alpha, temperature = config.get("alpha", 0.9), config.get("temperature", 1.0)
    summary = f"`{divergence}` divergence, alpha {alpha}, temperature {temperature}"
    rows = [
        ("teacher", _link(provenance.teacher)),
        ("starting checkpoint", _starting_point(provenance)),
        ("student", f"{student.get('architecture')} ({student.get('num_parameters', 0):,} parameters, "
                    f"{student.get('num_trainable_parameters', 0):,} trained, {student.get('dtype')})"),
        ("divergence", f"`{divergence}`" + (f" (beta {config.get('beta', 0.5)})" if divergence == "jsd" else "")),
        ("loss", f"{alpha} × KD + {round(1 - float(alpha), 6)} × cross-entropy, temperature {temperature}"),
    ]
    if provenance.cross_tokenizer:
        summary += f", distilled across tokenizers (`{provenance.cross_tokenizer.get('method')}`)"
        rows.append(("across tokenizers", _cross_tokenizer_text(provenance.cross_tokenizer)))
    gguf = (provenance.teacher.details.get("gguf") if provenance.teacher else None) or {}
    if gguf:
        rows.insert(1, ("teacher weights", f"dequantised from the GGUF file `{gguf['file_name']}` "
                                           f"({gguf['file_type']}, sha256 `{gguf['sha256']}`)"))
    if "adapter" in student:
        adapter = student["adapter"]
        rows.append(("adapter", f"{adapter.get('peft_type')} r={adapter.get('r')}, alpha={adapter.get('lora_alpha')}, "
                                f"modules {adapter.get('target_modules')}"))
    for key in ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
                "gradient_accumulation_steps", "max_length", "packing", "completion_only_loss"):
        if key in config:
            rows.append((key, f"`{config[key]}`"))
    rows.append(("seed", f"`{provenance.seed}`"))
    return summary, rows


def _cross_tokenizer_text(record: Mapping[str, Any]) -> str:
    method = record.get("method")
    what = ("ULD (sorted probabilities, Wasserstein-1)" if method == "uld"
            else "span loss (shared tokens with the divergence, ULD on the rest)")
    sides = [f"{who} `{t.get('class')}` ({t.get('vocab_size')} tokens, SHA-256 `{t.get('sha256')}`)"
             for who, t in (("student", record.get("student_tokenizer") or {}),
                            ("teacher", record.get("teacher_tokenizer") or {}))]
    return f"`{method}`: {what} at positions matched by text; " + "; ".join(sides)


def _data_rows(provenance: Provenance) -> list[list[str]]:
    rows = []
    for record in provenance.datasets:
        tokens = "–" if record.num_tokens is None else f"{record.num_tokens:,} ({record.num_trained_tokens or 0:,})"
        rows.append([
            _link(record, "dataset") if record.kind == "hub" else f"`{record.name}` (in memory)",
            record.split,
            f"`{record.revision[:12]}`" if record.revision else "–",
            f"{record.num_rows:,}" if record.num_rows is not None else "–",
            tokens,
            f"`{record.license}` ({record.license_source})" if record.license else "unknown",
            f"`{record.fingerprint}`" if record.fingerprint else "–",
        ])
    return rows


def _privacy_rows(provenance: Provenance) -> list[list[str]]:
    """One row per scanned dataset: rows scanned and flagged, personal-data findings by kind, secrets."""
    rows = []
    for record in provenance.datasets:
        scan = record.privacy_scan
        if scan is None:
            continue
        counts = scan.get("counts", {})
        secrets = scan.get("num_secrets", 0)
        kinds = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items()
                          if n and name not in ("email", "phone", "ip_address"))
        rows.append([
            record.repo_id or f"`{record.name}`",
            record.split,
            f"{scan.get('num_texts', 0):,}" if scan.get("columns") else "– (no text columns)",
            f"{scan.get('num_texts_flagged', 0):,}",
            *(f"{counts.get(name, 0):,}" for name in ("email", "phone", "ip_address")),
            f"**{secrets:,}** ({kinds})" if secrets else "0",
        ])
    return rows


def _trained_on_secrets(provenance: Provenance) -> list[DatasetRecord]:
    """Training datasets (not evaluation sets) whose privacy scan found secrets."""
    return [d for d in provenance.datasets if not d.split.startswith("eval") and d.num_secrets]


def _provenance_rows(provenance: Provenance) -> list[list[str]]:
    rows = []
    for record in [provenance.teacher, provenance.base_model, *provenance.datasets]:
        if record is None:
            continue
        pin = record.revision or (f"sha256 `{record.content_sha256}`" if record.content_sha256 else "–")
        role = record.role if record.role != "dataset" else f"dataset ({getattr(record, 'split', '')})"
        licence = f"`{record.license}` ({record.license_source})" if record.license else "unknown (missing)"
        rows.append([role, record.repo_id or f"`{record.name}` ({record.kind})", f"`{pin}`" if record.revision
                     else pin, licence])
    return rows


def _compute_rows(provenance: Provenance, co2: dict | None) -> list[tuple[str, str]]:
    hardware = provenance.hardware
    accelerators = ", ".join(a["name"] for a in hardware.get("accelerators", [])) or "none (CPU)"
    wall = provenance.wall_clock_seconds
    rows = [
        ("hardware", f"{accelerators}; CPU {hardware.get('cpu')} ({hardware.get('num_cpus')} cores); "
                     f"{hardware.get('num_processes', 1)} process(es)"),
        ("training wall-clock", f"{wall:,.1f} s" if wall is not None else "not recorded"),
        ("accelerator hours", f"{provenance.accelerator_hours:.4g}" if provenance.accelerator_hours is not None
         else "not recorded"),
        ("CO₂ emissions", f"{co2['emissions']:g} g ({co2.get('source')})" if co2 else "not measured"),
        ("platform", str(hardware.get("platform"))),
    ]
    rows += [(name, f"`{version}`") for name, version in provenance.libraries.items() if version]
    return rows


def duty_lines(verdict: LicenseVerdict) -> list[str]:
    """The duties of a verdict as card bullet points."""
    duties, lines = verdict.duties, []
    if duties.name_prefix:
        lines.append(f"The model's name starts with “{duties.name_prefix}”.")
    lines += [f"Show “{line}” prominently (done at the top of this card)." for line in duties.attribution_lines]
    if duties.notice_lines:
        lines.append("Keep the [`NOTICE`](NOTICE) file: " + " ".join(duties.notice_lines))
    if duties.modification_notices:
        lines.append("Modified files say so: the [`NOTICE`](NOTICE) file states that the weights were changed from "
                     "those of " + ", ".join(duties.modification_notices) + ".")
    if duties.license_copies:
        lines.append(f"Ship a copy of the licence ([`LICENSE`](LICENSE)): {', '.join(duties.license_copies)}.")
    if duties.non_commercial:
        lines.append("Non-commercial use only.")
    if duties.share_alike:
        lines.append("ShareAlike: adaptations of this model keep its licence.")
    if duties.credits:
        lines.append("Credit the sources: " + ", ".join(duties.credits) + ".")
    return lines


def _citations(provenance: Provenance) -> list[str]:
    keys = ["hf_distill", "hinton"]
    divergence_key = _DIVERGENCE_CITATION.get(provenance.config.get("divergence", "forward_kl"))
    keys += [divergence_key] if divergence_key else []
    keys.append("trl")
    version = provenance.hf_distill.get("version") or "unknown"
    year = release_year()
    return [_CITATIONS[key].replace("{version}", version).replace("{year}", year) for key in keys]


def release_year() -> str:
    """The year the installed hf_distill was released (`hf_distill._version.__release_date__`), for the citation."""
    return _version.__release_date__[:4]


def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR), undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
    )
    return env.get_template(TEMPLATE_NAME)


def build_model_card(
    provenance: Provenance,
    report: Any = None,
    verdict: LicenseVerdict | None = None,
    *,
    repo_id: str | None = None,
    mode: PushMode = "full",
    student_license: str | None = None,
    co2_eq_emissions: Mapping[str, Any] | float | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
    plot_path: str | None = None,
) -> ModelCard:
    """Build the student's model card from its provenance, benchmark report and licence verdict.

    Args:
        provenance ([`Provenance`]): what the student came from (`distillation_provenance.json`).
        report ([`BenchmarkReport`], *optional*): student-vs-teacher results: the card's table, plot and
            `model-index`. Any object with `to_markdown()` and `to_eval_results()` works.
        verdict ([`LicenseVerdict`], *optional*): the licence check; computed from `provenance` when unset.
        repo_id (`str`, *optional*): the Hub id the card is for (used in the usage snippet and the name check);
            defaults to the student's name.
        mode (`str`, defaults to `"full"`): `"full"`, `"adapter"` (PEFT) or `"merged"` (adapter merged into base).
        student_license (`str`, *optional*): the licence to publish under, when `verdict` is unset.
        co2_eq_emissions (`float` or `dict`, *optional*): grams of CO₂ emitted by training, when measured.
        extra_metadata (`dict`, *optional*): more metadata; only keys in `EXTRA_METADATA_KEYS` are accepted.
        plot_path (`str`, *optional*): repo path of the benchmark plot, shown under the table.

    Returns:
        `huggingface_hub.ModelCard`

    Example:

    ```python
    >>> card = build_model_card(Provenance.load("student"), report, repo_id="me/Llama-tiny-distilled")
    >>> card.data.teacher_model
    {'id': 'meta-llama/Llama-3.1-8B-Instruct', 'revision': '0e9e39f249a16976918f6564b8830bc894c89659'}
    ```
    """
    extra_metadata = dict(extra_metadata or {})
    unknown = sorted(set(extra_metadata) - EXTRA_METADATA_KEYS)
    if unknown:
        raise CardError(
            f"Unknown or reserved card metadata keys: {unknown}. `extra_metadata` accepts "
            f"{sorted(EXTRA_METADATA_KEYS)}; "
            "licence, base model, teacher, datasets and results come from the provenance, verdict and report."
        )
    repo_id = repo_id or provenance.student.get("name") or "student"
    model_name = repo_id.split("/")[-1]
    if verdict is None:
        verdict = provenance.check_license(student_license=student_license, student_name=repo_id)
    eval_results = _hub_eval_results(list(report.to_eval_results())) if report is not None else []
    data = _card_data(provenance, verdict, mode=mode, model_name=model_name, eval_results=eval_results,
                      co2_eq_emissions=co2_eq_emissions, extra_metadata=extra_metadata)
    summary, recipe_rows = _recipe(provenance)
    rule = LICENSE_RULES.get(verdict.student_license)
    tokenizer = provenance.tokenizer
    secret_sets = _trained_on_secrets(provenance)
    if secret_sets:  # the student is not the data, but it can repeat what it was trained on: warn, do not refuse
        logger.warning(
            "The privacy scan found secrets in the training data of %s (%s); the student may reproduce them. The card "
            "says so. Remove them from the data and retrain before publishing if they are real credentials.",
            repo_id, ", ".join(f"{d.display_name} ({d.split}): {d.num_secrets}" for d in secret_sets),
        )
    restrictions = list(verdict.duties.use_restrictions)
    content = _template().render(
        card_data=data.to_yaml(),
        model_name=model_name,
        repo_id=repo_id,
        mode=mode,
        attribution_lines=verdict.duties.attribution_lines,
        conflict_overridden=verdict.conflict_overridden,
        conflicts=verdict.problems("conflict"),
        student={"size": _size(provenance.student.get("num_parameters")),
                 "architecture": provenance.student.get("architecture") or "causal LM"},
        teacher={"markdown": _link(provenance.teacher)},
        base={"markdown": _link(provenance.base_model)} if provenance.base_model else None,
        datasets=[{"markdown": _link(d, "dataset")} for d in provenance.datasets if d.split == "train"],
        recipe_summary=summary,
        license_title=rule.title if rule else verdict.student_license,
        license_url=rule.url if rule else None,
        verdict=verdict,
        has_chat_template=bool(tokenizer.get("chat_template_sha256")),
        recipe_rows=recipe_rows,
        config_json=json.dumps(provenance.config, indent=2, sort_keys=True) if provenance.config else "",
        data_rows=_data_rows(provenance),
        privacy_rows=_privacy_rows(provenance),
        secret_datasets=[f"{d.display_name} ({d.split}): {d.num_secrets}" for d in secret_sets],
        benchmark_markdown=report.to_markdown().strip() if report is not None else "",
        trust_markdown=trust_card_section(report, provenance, verdict),
        plot_path=plot_path,
        provenance_rows=_provenance_rows(provenance),
        tokenizer={"class": tokenizer.get("class"), "vocab_size": tokenizer.get("vocab_size"),
                   "sha256": tokenizer.get("sha256"), "chat_template": tokenizer.get("chat_template_sha256")},
        weight_files=sorted(provenance.weight_files.items()),
        hf_distill=provenance.hf_distill,
        duty_lines=duty_lines(verdict),
        use_restrictions=restrictions,
        compute_rows=_compute_rows(provenance, getattr(data, "co2_eq_emissions", None)),
        citations=_citations(provenance),
    )
    return ModelCard(content)


# -- local checks ----------------------------------------------------------------------------------------------------


def _looks_like_path(value: Any) -> bool:
    return not isinstance(value, str) or not value or bool(_PATH_LIKE.search(value)) or value.count("/") > 1


def check_card(card: ModelCard) -> None:
    """What can be checked without the Hub, before any upload: the card parses back to the same metadata, required
    keys are present, no unknown keys, ids are Hub ids (never local paths), and eval results are complete.

    Raises:
        [`CardError`]: listing every problem.
    """
    problems = []
    metadata = card.data.to_dict()
    if ModelCard(str(card)).data.to_dict() != metadata:
        problems.append("the card does not parse back to the same metadata (check for YAML special characters)")
    problems += [f"required key `{key}` is missing" for key in _REQUIRED_KEYS if not metadata.get(key)]
    problems += [f"unknown metadata key `{key}`" for key in sorted(set(metadata) - ALLOWED_METADATA_KEYS)]
    license_id = metadata.get("license")
    if license_id and license_id not in HUB_LICENSE_IDS:
        problems.append(f"`license: {license_id}` is not a Hub licence id; use `other` with `license_name`")
    if license_id == "other" and not (metadata.get("license_name") and metadata.get("license_link")):
        problems.append("`license: other` needs `license_name` and `license_link`")
    bases = metadata.get("base_model")
    if bases and not metadata.get("base_model_relation"):
        problems.append("`base_model` is set without `base_model_relation` (finetune or adapter)")
    ids = [("base_model", b) for b in ([bases] if isinstance(bases, str) else bases or [])]
    ids += [("datasets", d) for d in metadata.get("datasets") or []]
    teacher = metadata.get("teacher_model")
    if teacher is not None:
        ids.append(("teacher_model.id", teacher.get("id") if isinstance(teacher, dict) else teacher))
    problems += [
        f"`{key}: {value}` is not a Hub id (never a local path)" for key, value in ids if _looks_like_path(value)
    ]
    for result in card.data.eval_results or []:
        missing = [f for f in ("task_type", "dataset_type", "dataset_name", "metric_type") if not getattr(result, f)]
        if missing or result.metric_value is None:
            problems.append(f"eval result {result.metric_name or result.metric_type!r} lacks {missing or ['value']}")
        if result.verified:
            problems.append(f"eval result {result.metric_type!r} sets `verified`; self-reported results never do")
    if problems:
        raise CardError("The model card fails local checks:\n" + "\n".join(f"- {p}" for p in problems))
