"""`DistillationTrainer`: TRL's `SFTTrainer` whose loss is `alpha * KD + (1 - alpha) * CE` against a teacher."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from trl import SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from ..benchmark import benchmark
from ..benchmark.errors import BenchmarkInputError
from ..benchmark.plots import plot_training_curves
from ..formats.cache import CachedDatasetError, check_tokenizer_hash, is_cached_dataset, prepare_cached_rows
from ..formats.checks import check_cached_targets
from ..formats.truncation import prepare_with_truncation_report
from ..gguf import gguf_file_of, load_gguf_student
from ..heads import OutputHead, final_hidden_states, live_head, unwrap_model
from ..losses.terms import LossSettings
from ..publish.card import build_model_card
from ..publish.provenance import collect_provenance, is_hub_id, provenance_sources, sources_gather_the_teacher
from ..publish.repo import PushError
from ..publish.student import push_student
from ..safe_loading import check_safetensors_weights, safe_init_kwargs
from ..teachers import TeacherSource, resolve_teacher_source
from .checkpointing import CheckpointingMixin
from .checkpoints import full_state_dict_for_final_save
from .collator import DistillationCollator
from .config import DistillationConfig, NotADistillationConfigError, reject_config_fields_in_trainer_kwargs
from .on_policy import OnPolicyBatches
from .preflight import check_before_loading
from .token_stats import TokenStatsMixin, mask_repeated_examples, trained_positions

logger = logging.getLogger(__name__)

__all__ = ["DistillationTrainer"]

# Batch keys the student's forward takes; everything else (labels, cached teacher columns) is the loss's.
_MODEL_INPUT_KEYS = (
    "input_ids", "attention_mask", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k",
    "seq_idx",
)


class DistillationTrainer(CheckpointingMixin, TokenStatsMixin, SFTTrainer):
    """Distil a teacher into a student with TRL's SFT data handling: every TRL dataset format, chat templates,
    completion-only masks, packing, PEFT (LoRA, QLoRA) and the usual `Trainer` machinery.

    The loss on the tokens SFT trains on is `alpha * KD + (1 - alpha) * CE`, normalised by the number of those tokens
    in the whole (gradient-accumulated, multi-process) batch, so 2 steps of 4 rows equal 1 step of 8.

    Args:
        model (`str`, `PreTrainedModel` or `PeftModel`): the student: a Hub id, a local path or a model.
        teacher_model (`str`, `PreTrainedModel`, *optional*): the teacher: a Hub id, a local path or a model (an
            8-bit/4-bit one too). Loaded with `args.teacher_model_init_kwargs` when given as id or path. `None` uses
            `args.teacher_model_name_or_path`, or the cached teacher columns of the dataset.
        args ([`DistillationConfig`], *optional*): training and distillation settings.
        teacher_processing_class (`PreTrainedTokenizerBase`, *optional*): the teacher's tokenizer, to check it
            matches the student's (otherwise fetched like the teacher: its folder, or its Hub repo at its revision).
        teacher_server (`ServedTeacher`, *optional*): a teacher served by vLLM or SGLang over HTTP (its top-k
            log-probs); `teacher_model="http://host:port"` is the same with the defaults.
        Other arguments are those of [`trl.SFTTrainer`].

    Example:

    ```python
    >>> from hf_distill import DistillationConfig, DistillationTrainer
    >>> trainer = DistillationTrainer(
    ...     model="Qwen/Qwen2.5-0.5B-Instruct",
    ...     teacher_model="Qwen/Qwen2.5-1.5B-Instruct",
    ...     args=DistillationConfig(output_dir="qwen-0.5b-distilled", alpha=0.9),
    ...     train_dataset=dataset,
    ... )
    >>> trainer.train()
    ```
    """

    _tag_names = ["trl", "sft", "hf-distill", "distillation"]
    _name = "Distillation"

    def __init__(
        self,
        model,
        teacher_model=None,
        args: DistillationConfig | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        *,
        teacher_processing_class=None,
        teacher_server=None,
        peft_config=None,
        **kwargs: Any,
    ):
        reject_config_fields_in_trainer_kwargs(kwargs)  # e.g. teacher_model_init_kwargs= belongs in the config
        args = self._check_args(args, model)
        if isinstance(model, (str, os.PathLike)):  # TRL loads it with `args.model_init_kwargs`: safetensors only
            check_safetensors_weights(model, args.model_init_kwargs, argument="model")
            args.model_init_kwargs = safe_init_kwargs(args.model_init_kwargs, trust_remote_code=args.trust_remote_code)
        #: rows with an empty completion, per dataset name (counted before any model is loaded).
        self.empty_completions = check_before_loading(
            model, teacher_model, args, train_dataset=train_dataset, eval_dataset=eval_dataset,
            peft_config=peft_config, formatting_func=kwargs.get("formatting_func"),
        )
        #: what truncation to `max_length` cut, per dataset name ([`~hf_distill.data.truncation.TruncationReport`]).
        self.truncation_reports = {}
        columns = _column_names(train_dataset)
        self.teacher: TeacherSource = resolve_teacher_source(
            teacher_model, args, columns,
            teacher_processing_class=teacher_processing_class, train_dataset=train_dataset,
            teacher_server=teacher_server,
        )
        #: samples completions for `lmbda` > 0 / `seq_kd` (None: every batch trains on the dataset's completions).
        self.on_policy = OnPolicyBatches.from_config(args, self.teacher)
        if isinstance(model, (str, os.PathLike)) and gguf_file_of(args.model_init_kwargs):
            model, processing_class = load_gguf_student(model, args.model_init_kwargs, processing_class)
        super().__init__(
            model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            peft_config=peft_config,
            **kwargs,
        )
        self._use_distillation_collator()
        _remove_trl_fused_forward(self.model)
        self.student_head = OutputHead.from_model(self.model)
        self._stat_sums: dict[str, torch.Tensor] = {}  # per mode: summed stats of the current logging window
        self.teacher.setup(self)
        if self.on_policy is not None:
            self.on_policy.setup(self)
        # The datasets as given: the provenance's privacy scan reads their text, which tokenizing or packing may drop.
        self._source_datasets = (train_dataset, eval_dataset)

    # -- set-up -----------------------------------------------------------------------------------------------------

    @staticmethod
    def _check_args(args, model) -> DistillationConfig:
        if args is None:
            name = model if isinstance(model, str) else getattr(getattr(model, "config", None), "_name_or_path", "")
            return DistillationConfig(output_dir=f"{str(name).rstrip('/').split('/')[-1] or 'student'}-distilled")
        if not isinstance(args, DistillationConfig):
            raise NotADistillationConfigError(
                f"`args` must be a `DistillationConfig`, got {type(args).__name__}. Build one with "
                "`DistillationConfig(output_dir=..., **sft_config.to_dict())`."
            )
        return args

    def _use_distillation_collator(self) -> None:
        """Swap TRL's default collator for ours (same padding), keeping a user-supplied collator."""
        if type(self.data_collator) is DataCollatorForLanguageModeling:
            base = self.data_collator
            self.data_collator = DistillationCollator(
                pad_token_id=base.pad_token_id,
                padding_free=base.padding_free,
                return_position_ids=base.return_position_ids,
                pad_to_multiple_of=base.pad_to_multiple_of,
                teacher_columns=self.teacher.collator_columns,
                sequence_columns=dict(self.teacher.collator_sequence_columns),
            )

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        for column in self.teacher.dataset_columns:
            if column not in self._signature_columns:
                self._signature_columns.append(column)

    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def truncation_report(self):
        """What truncation to `max_length` cut from the train dataset (`None` when packing, streaming or unlimited)."""
        return self.truncation_reports.get("train")

    # -- on-policy batches (hf_distill.training.on_policy) ----------------------------------------------------------

    def get_batch_samples(self, epoch_iterator, num_batches: int, device):
        """`Trainer.get_batch_samples`; with on-policy sampling, the micro-batches get their sampled completions here,
        before the accumulated batch's trained positions are counted (transformers would count the dataset's)."""
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self.on_policy is None or not batch_samples:
            return batch_samples, num_items_in_batch
        batch_samples = self.on_policy.rebuild(self, batch_samples)
        return batch_samples, self._get_num_items_in_batch(batch_samples, device)

    # -- loss -------------------------------------------------------------------------------------------------------

    @property
    def loss_settings(self) -> LossSettings:
        """The loss fields of `self.args`, read on every batch: a callback that changes `args.alpha` (or the
        divergence, temperature, ...) changes the loss and its gradient from the next batch on."""
        return LossSettings.from_config(self.args)

    @loss_settings.setter
    def loss_settings(self, settings: LossSettings) -> None:
        settings.apply_to(self.args)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        settings = self.loss_settings
        labels = inputs["labels"]
        if mode == "eval" and self.accelerator.num_processes > 1:
            labels = mask_repeated_examples(labels, inputs, self.accelerator.gradient_state,
                                            self.accelerator.process_index)
        position_mask = trained_positions(labels)
        model_inputs = {key: inputs[key] for key in _MODEL_INPUT_KEYS if key in inputs}
        student_hidden = final_hidden_states(model, **model_inputs)[:, :-1][position_mask]
        teacher_targets = self.teacher.targets(inputs, position_mask)
        # The head as the engine holds it now (FSDP2 replaced the parameters at `prepare`), not `self.student_head`,
        # which only keeps the vocabulary size agreed with the teacher.
        student_head = live_head(model, vocab_size=self.student_head.vocab_size)
        terms = teacher_targets.kd_terms(student_hidden, student_head, labels[:, 1:][position_mask], settings)
        objective = settings.alpha * terms.kd_sum + (1 - settings.alpha) * terms.ce_sum

        # Normalise by the tokens of the whole accumulated batch across processes, like SFTTrainer's loss.
        denominator = num_items_in_batch if num_items_in_batch is not None else terms.num_positions
        loss = objective / torch.as_tensor(denominator, device=terms.kd_sum.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self._tp_size)

        self._record_stats(mode, objective, terms, inputs)  # TokenStatsMixin: the logged metrics
        if return_outputs:
            with torch.no_grad():
                outputs = model(**model_inputs)
            return loss, outputs
        return loss

    # -- cached teacher datasets (offline-teachers issue) ----------------------------------------------------------

    def _prepare_maybe_cached(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
        """SFTTrainer's dataset preparation, with cached-teacher datasets (`hf_distill.data.cache_teacher_logits`)
        made ready for it first, and their `teacher_topk` blobs decoded on the fly when the cache is the teacher."""
        if not is_cached_dataset(_column_names(dataset)):
            dataset = self.teacher.prepare_dataset(dataset, processing_class, args, dataset_name)
            dataset, self.truncation_reports[dataset_name] = prepare_with_truncation_report(
                super()._prepare_dataset, dataset, processing_class, args, packing, formatting_func, dataset_name
            )
            return dataset
        dataset = self._prepare_cached_rows(dataset, args, packing, formatting_func, dataset_name)
        dataset = super()._prepare_dataset(dataset, processing_class, args, False, None, dataset_name)
        decode = self.teacher.decode_batch  # a live teacher given beside a cache ignores it
        return dataset.with_transform(decode) if decode is not None else dataset

    def _prepare_cached_rows(self, dataset, args, packing, formatting_func, dataset_name):
        """Refuse settings a cache cannot serve, check its tokenizer against the student's (before any work), then
        build SFT labels from `completion_mask` (the cache has no prompt column, so TRL would train on every token)
        and truncate `input_ids`, labels and the cached targets together to `max_length`."""
        from datasets import Dataset

        problems = []
        if not isinstance(dataset, Dataset):
            problems.append(f"the {dataset_name} dataset is a {type(dataset).__name__}; load the cache as a "
                            "`Dataset` (`datasets.load_from_disk(path)`, or `load_dataset(...)` without streaming)")
        if packing:
            problems.append("`packing` (--packing) must be False: packed rows would mix the cached positions")
        if args.assistant_only_loss:
            problems.append("`assistant_only_loss` (--assistant_only_loss) must be False: the cache's "
                            "`completion_mask` already says which tokens are trained on")
        if args.completion_only_loss is False:
            problems.append("`completion_only_loss` (--completion_only_loss) must be unset or True: the cache holds "
                            "teacher targets only where `completion_mask` is 1")
        if formatting_func is not None:
            problems.append("`formatting_func` cannot apply: the cache is already tokenized")
        if problems:
            raise CachedDatasetError(f"The {dataset_name} dataset carries cached teacher logits, but " + "; ".join(
                problems) + ".")
        check_tokenizer_hash(dataset, self._tokenizer, dataset_name=dataset_name,
                             cross_tokenizer=args.cross_tokenizer is not None)
        check_cached_targets(dataset, dataset_name=dataset_name)
        return dataset.map(
            prepare_cached_rows,
            batched=True,
            with_indices=True,
            remove_columns=["completion_mask"],
            fn_kwargs={"max_length": args.max_length, "truncation_mode": args.truncation_mode,
                       "dataset_name": dataset_name},
            num_proc=args.dataset_num_proc,
            desc=f"Checking the cached teacher and building labels of the {dataset_name} dataset",
        )

    # -- benchmark (benchmark issue) --------------------------------------------------------------------------------

    def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
        # Keep each eval set as given: `benchmark()` needs the prompts and reference completions, while
        # `self.eval_dataset` becomes TRL's tokenized (possibly packed or truncated) copy.
        if dataset_name != "train":
            self._raw_eval_datasets = {**getattr(self, "_raw_eval_datasets", {}), dataset_name: dataset}
        return self._prepare_maybe_cached(dataset, processing_class, args, packing, formatting_func, dataset_name)

    def benchmark(self, eval_dataset=None, **kwargs):
        """Benchmark the trained student against the trainer's teacher with [`hf_distill.benchmark.benchmark`]:
        quality, fidelity, latency and size, as a [`~hf_distill.benchmark.BenchmarkReport`].

        Args:
            eval_dataset (`Dataset` or `str`, *optional*): held-out rows in prompt/completion or messages format; the
                name of one of the trainer's eval datasets; or None for the trainer's eval dataset as it was given.
            kwargs: any other argument of `hf_distill.benchmark.benchmark` (`baseline=`, `batch_sizes=`,
                `dataset_name=`, ...). `teacher=` overrides the trainer's teacher.
        """
        raw = getattr(self, "_raw_eval_datasets", {})
        if eval_dataset is None or isinstance(eval_dataset, str):
            if isinstance(eval_dataset, str) and eval_dataset not in raw:
                raise BenchmarkInputError(f"No eval dataset named {eval_dataset!r}: the trainer has {sorted(raw)}.")
            if eval_dataset is None and len(raw) != 1:
                raise BenchmarkInputError(
                    f"The trainer has {len(raw)} eval datasets ({sorted(raw)}): pass `eval_dataset=` (one of those "
                    "names, or a held-out dataset in prompt/completion or messages format)."
                )
            eval_dataset = raw[eval_dataset] if isinstance(eval_dataset, str) else next(iter(raw.values()))
        teacher = self.teacher.model
        if teacher is None and "teacher" not in kwargs:
            logger.warning("The trainer's teacher is not a live model: benchmarking the student without a teacher.")
        kwargs.setdefault("teacher", teacher)
        kwargs.setdefault("tokenizer", self.tokenizer)
        kwargs.setdefault("teacher_tokenizer", self.teacher.teacher_tokenizer)
        student_name = self.args.hub_model_id or self.args.output_dir.rstrip("/").split("/")[-1]
        kwargs.setdefault("model_names", {"student": student_name})
        return benchmark(self.model, dataset=eval_dataset, **kwargs)

    def plot_training_curves(self, path) -> str:
        """Write a PNG of `kd_loss`, `ce_loss` and `teacher_agreement` (train and eval) against the step, from the
        trainer's log history; returns the path."""
        return plot_training_curves(self.state.log_history, path)

    # -- model card and push (card/push issue) ----------------------------------------------------------------------

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        # Under FSDP's SHARDED_STATE_DICT transformers writes no weights; the final save is a from_pretrained folder.
        with full_state_dict_for_final_save(self, internal=_internal_call):
            super().save_model(output_dir, _internal_call=_internal_call)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        if getattr(self, "_provenance_sources", None) is None and sources_gather_the_teacher(self):
            self._provenance_sources = provenance_sources(self)  # on every process: it gathers the teacher's shards
        super()._save(output_dir, state_dict=state_dict)  # CheckpointingMixin: the weights and training_args.json
        if self.args.should_save:  # after the weights, whose hashes it records
            self.collect_provenance(output_dir or self.args.output_dir).save(output_dir or self.args.output_dir)

    def collect_provenance(self, folder: str | None = None):
        """The student's [`~hf_distill.provenance.Provenance`] (with the weight hashes of `folder`), including the
        licence overrides given to `push_to_hub` / `create_model_card`. Sources are resolved and hashed once."""
        if getattr(self, "_provenance_sources", None) is None:
            self._provenance_sources = provenance_sources(self)
        provenance = collect_provenance(self, folder, sources=self._provenance_sources)
        provenance.apply_license_overrides(**getattr(self, "_license_overrides", {}))
        self._provenance = provenance
        return provenance

    def _remember_license_overrides(self, **overrides) -> None:
        self._license_overrides = {**getattr(self, "_license_overrides", {}),
                                   **{k: v for k, v in overrides.items() if v is not None}}

    def create_model_card(
        self, model_name: str | None = None, dataset_name: str | None = None, tags=None, *, report=None,
        student_license: str | None = None, teacher_license: str | None = None,
        dataset_licenses: dict[str, str] | str | None = None, mode: str = "full", **card_kwargs,
    ):
        """Write the distillation card ([`~hf_distill.card.build_model_card`]) to `output_dir/README.md`.

        Keeps TRL's signature (its checkpointing calls `create_model_card(model_name=...)`); `dataset_name` names the
        training data's Hub id when the dataset object does not know it, `tags` are added to the card's tags.
        """
        import os

        if not self.is_world_process_zero():
            return None
        self._remember_license_overrides(teacher_license=teacher_license, dataset_licenses=dataset_licenses)
        folder = self.args.output_dir
        provenance = self.collect_provenance(folder if os.path.isdir(folder) else None)
        train = next((d for d in provenance.datasets if d.split == "train"), None)
        if dataset_name and is_hub_id(dataset_name) and train is not None and train.repo_id is None:
            train.repo_id, train.kind = dataset_name, "hub"
        extra = dict(card_kwargs.pop("extra_metadata", None) or {})
        if tags:
            extra["tags"] = [tags] if isinstance(tags, str) else list(tags)
        repo_id = self.args.hub_model_id or model_name or os.path.basename(os.path.normpath(folder))
        card = build_model_card(provenance, report, repo_id=repo_id, mode=mode, student_license=student_license,
                                extra_metadata=extra, **card_kwargs)
        os.makedirs(folder, exist_ok=True)
        card.save(os.path.join(folder, "README.md"))
        return card

    def push_to_hub(
        self, repo_id: str | None = None, *, mode: str | None = None, private: bool | None = None,
        token: str | None = None, revision: str | None = None, commit_message: str | None = None,
        allow_license_conflict: bool = False, report=None, student_license: str | None = None,
        teacher_license: str | None = None, base_license: str | None = None,
        dataset_licenses: dict[str, str] | str | None = None, save: bool = True, **kwargs,
    ):
        """Save the student to `output_dir` and publish it with [`~hf_distill.hub.push_student`]: licence
        pre-flight and local card checks first, then one commit (weights, tokenizer, card, LICENSE/NOTICE when
        required, provenance, benchmark files). Never `Trainer.push_to_hub`, which may overwrite README.md.

        Args:
            repo_id (`str`, *optional*): `namespace/name`; defaults to `args.hub_model_id`.
            mode (`str`, *optional*): `"full"`, `"adapter"` or `"merged"`; defaults to `"adapter"` for PEFT students.
            report ([`BenchmarkReport`], *optional*): from `trainer.benchmark(...)`, for the card and `model-index`.
            token (`str`, *optional*): defaults to `args.hub_token`, `HF_TOKEN` or the stored login.
            save (`bool`, defaults to `True`): save the student first; `False` pushes what `save_model` last wrote
                to `output_dir` (the CLI saves once, then pushes).
            kwargs: `co2_eq_emissions`, `extra_metadata` of `push_student`; `blocking` (from `Trainer`) is ignored.
            Other arguments are those of [`~hf_distill.hub.push_student`].

        Returns:
            [`~hf_distill.hub.PushResult`] on the main process, `None` on the others.
        """
        kwargs.pop("blocking", None)
        repo_id = repo_id or self.args.hub_model_id
        if repo_id is None:
            raise PushError("No repo id: pass `push_to_hub('namespace/name')` or set `hub_model_id` "
                             "(--hub_model_id) in DistillationConfig.")
        self._remember_license_overrides(teacher_license=teacher_license, base_license=base_license,
                                         dataset_licenses=dataset_licenses)
        if save:
            self.save_model(self.args.output_dir, _internal_call=True)  # writes weights and provenance
        if not self.is_world_process_zero():
            return None
        return push_student(
            self.args.output_dir, repo_id, private=private, token=token or self.args.hub_token, revision=revision,
            commit_message=commit_message, mode=mode, allow_license_conflict=allow_license_conflict, report=report,
            provenance=self._provenance if save else None, student_license=student_license,
            teacher_license=teacher_license, base_license=base_license, dataset_licenses=dataset_licenses, **kwargs,
        )

    # `args.push_to_hub=True` makes `Trainer` create the repo when it is built and upload `output_dir` at every
    # checkpoint save: both would reach the Hub before the licence, privacy and card checks of `push_to_hub`, and the
    # checkpoint uploads carry no card. So the repo is created by the one checked push, and checkpoints stay local.

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """No request: the repo is created by [`push_to_hub`] after its pre-flight checks."""
        self.hub_model_id = self.args.hub_model_id
        self.push_in_progress = None

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        if not getattr(self, "_warned_checkpoint_push", False) and self.is_world_process_zero():
            logger.warning(
                "Checkpoints are not pushed to the Hub during training (`push_to_hub=True` with hub_strategy=%r): "
                "such uploads would skip the licence, privacy and card checks. They stay in %s; the student is "
                "published once, checked, by `trainer.push_to_hub()` (the CLI does so after training).",
                self.args.hub_strategy, self.args.output_dir,
            )
            self._warned_checkpoint_push = True


def _remove_trl_fused_forward(model) -> None:
    """Drop the `forward` that `SFTTrainer` sets on the student instance (`trl.trainer.utils.add_fused_lm_head`): its
    closure holds the original model, so a `copy.deepcopy` of the student (`trl.create_reference_model`, a second
    trainer on a copy) would run the original's weights. This trainer never calls it (`compute_loss` reads the final
    hidden states through a temporary hook, `heads.final_hidden_states`)."""
    inner = unwrap_model(model)
    code = getattr(getattr(vars(inner).get("forward"), "__func__", None), "__code__", None)
    if code is not None and code.co_name == "_fused_forward" and "trl" in Path(code.co_filename).parts:
        del inner.forward


def _column_names(dataset) -> list[str]:
    if dataset is None:
        return []
    names = getattr(dataset, "column_names", None)
    if isinstance(names, dict):  # DatasetDict
        names = next(iter(names.values()), [])
    return list(names or [])
