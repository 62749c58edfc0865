"""The bad-input catalogue (`docs/errors.md`), run as one table: each case builds a bad input, and the test checks
the exception class and the message (or, for inputs that are accepted with a warning, the logged warning).

Cases that must be refused before any model is loaded pass model paths that do not exist (`_NOWHERE`): had the check
come after loading, the error would be a loading error instead. The doc and the table agree mechanically: every case
id is in the doc, every id in the doc is a case.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import BitsAndBytesConfig
from trl import SFTConfig

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.benchmark import benchmark
from hf_distill.benchmark.errors import BenchmarkInputError
from hf_distill.benchmark.trust import TrustConfig, make_canaries
from hf_distill.cli import main
from hf_distill.cli.commands import CliUsageError
from hf_distill.cli.hub_access import HubUnreachableError
from hf_distill.cli.parser import RecipeError
from hf_distill.data import (
    CachedDatasetError,
    CacheSettingsError,
    CodecError,
    CorruptShardError,
    DatasetFormatError,
    GenerationSettingsError,
    ResumeError,
    TopKCodec,
    cache_teacher_logits,
    decode_topk,
    generate_completions,
    tokenize_like_sft,
)
from hf_distill.formats.cache import TOPK_COLUMN
from hf_distill.formats.checks import TrainingDataError
from hf_distill.gguf import GgufFileError
from hf_distill.hub import (
    DatasetPushError,
    HubAuthError,
    PushError,
    push_dataset,
    push_student,
    validate_repo_id,
)
from hf_distill.losses import LossInputError, distillation_loss
from hf_distill.losses.sparse import SparseTeacherError
from hf_distill.nonfinite import NonFiniteTeacherError
from hf_distill.offline.shards import RowLimitError, ShardSizeError
from hf_distill.privacy import PrivateDataError
from hf_distill.publish.licenses import LicenseConflictError
from hf_distill.publish.provenance import Provenance, ProvenanceError
from hf_distill.publish.space import SpaceConfigError, create_space
from hf_distill.quickstart import QuickstartError
from hf_distill.safe_loading import PickledWeightsError
from hf_distill.students import StudentInitError, init_student
from hf_distill.teachers import LocalModelTeacher, ServedTeacher, TeacherSetupError, TeacherTypeError
from hf_distill.teachers.cross_tokenizer import CrossTokenizerError
from hf_distill.teachers.served_client import ServedTeacherError, ServedTeacherUnavailable
from hf_distill.training.config import (
    ConfigFieldPassedToTrainerError,
    DistillationConfigError,
    NotADistillationConfigError,
)
from hf_distill.training.on_policy import OnPolicyBatches, OnPolicyError
from hf_distill.training.preflight import ModelSetupError
from hf_distill.vocabulary import VocabularyMismatchError
from tests import tiny
from tests.served_teacher_server import TeacherServer

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
ID_PATTERN = re.compile(r"\bE-[A-Z]+(?:-[A-Z0-9]+)+\b")
WARNING = "logged warning"  # `Case.error` of inputs accepted with a warning
_NOWHERE = "/nonexistent/hf-distill-model"


def _args(env, **kwargs):
    defaults = dict(output_dir=str(env.tmp_path / "out"), report_to="none", save_strategy="no", max_steps=1,
                    per_device_train_batch_size=2, max_length=64, seed=0)
    return DistillationConfig(**{**defaults, **kwargs})


class Env:
    """What a case builds its bad input from: tiny models, a tokenizer, a temporary folder, and (built on first use,
    shared by the module) a saved student with provenance and a cached-teacher dataset."""

    def __init__(self, tmp_path, tokenizer, other_tokenizer, model_factory, assets, request):
        self.tmp_path, self.tokenizer, self.other_tokenizer = tmp_path, tokenizer, other_tokenizer
        self.models, self.assets, self._request = model_factory, assets, request

    @property
    def hub(self):
        return self._request.getfixturevalue("hub_server")

    @property
    def served_url(self) -> str:
        """The URL of a local vLLM/SGLang-speaking teacher server (vLLM's default `--max-logprobs` 20)."""
        return self._request.getfixturevalue("served_teacher_server").url

    def student(self, **kwargs):
        return self.models("llama", hidden=16, layers=1, **kwargs)

    def trainer(self, **kwargs):
        """A `DistillationTrainer` on tiny models; any argument overridden."""
        defaults = dict(model=self.student(), teacher_model=self.models("llama", hidden=32, seed=2),
                        args=_args(self), train_dataset=tiny.prompt_completion_dataset(4),
                        processing_class=self.tokenizer)
        return DistillationTrainer(**{**defaults, **kwargs})

    def before_loading(self, **kwargs):
        """A trainer whose student and teacher do not exist: only a check before loading can answer."""
        return self.trainer(**{"model": _NOWHERE, "teacher_model": _NOWHERE, **kwargs})


class Assets:
    """Module-wide inputs that cost a second or two to build; each is built on first use."""

    def __init__(self, root: Path, tokenizer, model_factory, other_tokenizer=None):
        self.root, self.tokenizer, self.models = root, tokenizer, model_factory
        self.other_tokenizer = other_tokenizer

    @cached_property
    def teacher(self):
        return self.models("llama", hidden=32, seed=2).eval()

    @cached_property
    def student_folder(self) -> Path:
        """A saved student with its provenance (the input of `push_student`)."""
        teacher = self.models.save(self.root / "teacher", "llama", hidden=32, seed=2)
        args = DistillationConfig(output_dir=str(self.root / "student"), report_to="none", save_strategy="no",
                                  max_steps=1, max_length=64)
        trainer = DistillationTrainer(model=self.models("llama", hidden=16, layers=1), teacher_model=teacher,
                                      args=args, train_dataset=tiny.prompt_completion_dataset(4),
                                      processing_class=self.tokenizer)
        trainer.save_model()
        return self.root / "student"

    @cached_property
    def cached(self) -> Dataset:
        return cache_teacher_logits(self.teacher, tiny.prompt_completion_dataset(4), tokenizer=self.tokenizer,
                                    output_dir=self.root / "cache", top_k=8)


    @cached_property
    def cross_cached(self) -> Dataset:
        """A cache across tokenizers: a teacher with `other_tokenizer`, written for the `tokenizer` student."""
        teacher = tiny.ModelFactory(self.other_tokenizer)("llama", hidden=32, seed=2).eval()
        return cache_teacher_logits(teacher, tiny.prompt_completion_dataset(4), tokenizer=self.other_tokenizer,
                                    student_tokenizer=self.tokenizer, output_dir=self.root / "cross_cache", top_k=8)


@pytest.fixture(scope="module")
def assets(tmp_path_factory, tokenizer, model_factory, other_tokenizer):
    return Assets(tmp_path_factory.mktemp("errors"), tokenizer, model_factory, other_tokenizer)


@pytest.fixture(scope="module")
def served_teacher_server(assets):
    server = TeacherServer(assets.models.save(assets.root / "served", "llama", hidden=32, seed=2))
    yield server
    server.stop()


@pytest.fixture
def env(tmp_path, tokenizer, other_tokenizer, model_factory, assets, request):
    return Env(tmp_path, tokenizer, other_tokenizer, model_factory, assets, request)


@dataclass(frozen=True)
class Case:
    """One catalogued bad input: `make(env)` builds and uses it; it must raise `error` with `message` in its text
    (or, when `error` is `WARNING`, succeed and log `message`)."""

    id: str
    make: Callable[[Env], object]
    error: type[BaseException] | str
    message: str


# -- builders of bad inputs ----------------------------------------------------------------------------------------


def _nan_teacher(env):
    teacher = env.models("llama", hidden=32, seed=2)
    with torch.no_grad():
        teacher.model.norm.weight.fill_(float("nan"))
    return teacher


def _overflowing_fp16_teacher(env):
    teacher = env.models("llama", hidden=32, seed=2, dtype=torch.float16)
    with torch.no_grad():  # finite weights whose products pass float16's 65,504
        teacher.model.norm.weight.fill_(6e4)
    return teacher


def _cross_tokenizer_without_template(env):
    teacher_tokenizer = copy.deepcopy(env.other_tokenizer)
    teacher_tokenizer.chat_template = None
    return env.trainer(teacher_model=tiny.ModelFactory(teacher_tokenizer)("llama", hidden=32),
                       teacher_processing_class=teacher_tokenizer, args=_args(env, cross_tokenizer="span"),
                       train_dataset=tiny.conversational_prompt_completion_dataset(4))


def _one_step_loss(trainer):
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(2)]))
    return trainer.compute_loss(trainer.model, batch)


def _nan_cache(env):
    """The module's cache with the stored tail log-mass of row 1 set to NaN (a cache written from an overflowing
    teacher by an older hf_distill, or edited by hand)."""

    def poison(row, index):
        if index != 1:
            return row
        codec, quantized = TopKCodec.unpack(row[TOPK_COLUMN])
        quantized.tail_log_probs[:] = float("nan")
        return {TOPK_COLUMN: codec.pack(quantized)}

    return env.assets.cached.map(poison, with_indices=True)


def _shared_lm_head(env):
    student, teacher = env.student(), env.models("llama", hidden=16, layers=1, seed=2)
    teacher.lm_head = student.lm_head
    return env.trainer(model=student, teacher_model=teacher)


def _teacher_with_foreign_eos(env):
    teacher = env.models("llama", hidden=32)
    teacher.config.eos_token_id = 100  # an ordinary token of the student's tokenizer
    return env.trainer(teacher_model=teacher)


def _empty_completion_rows(env, empty_rows):
    data = tiny.prompt_completion_dataset(4).to_dict()
    for row in empty_rows:
        data["completion"][row] = ""
    return Dataset.from_dict(data)


def _messages_with_empty_answer(env):
    rows = tiny.messages_dataset(4).to_list()
    rows[2]["messages"][1]["content"] = ""
    return env.trainer(train_dataset=Dataset.from_list(rows))


def _long_prompts(env, max_length):
    return env.trainer(args=_args(env, max_length=max_length), train_dataset=tiny.prompt_completion_dataset(4))


def _push(env, repo_id="tester/student", **kwargs):
    hub = env.hub
    kwargs = {"token": hub.token, "teacher_license": "mit", "dataset_licenses": "mit", **kwargs}
    try:
        return push_student(env.assets.student_folder, repo_id, **kwargs)
    finally:
        assert hub.requests == [], "a bad push reached the Hub"


def _corrupt_finished_cache(env):
    kwargs = dict(tokenizer=env.tokenizer, output_dir=env.tmp_path / "cache", top_k=4)
    cache_teacher_logits(env.assets.teacher, tiny.prompt_completion_dataset(2), **kwargs)
    arrow = next((env.tmp_path / "cache").glob("data-*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:-4] + b"\x00\x01\x02\x03")  # bit rot after the run finished
    return cache_teacher_logits(env.assets.teacher, tiny.prompt_completion_dataset(2), **kwargs)


def _push_dataset(env, dataset, **kwargs):
    hub = env.hub
    try:
        return push_dataset(dataset, "tester/data", token=hub.token, **kwargs)
    finally:
        assert hub.requests == [], "a refused dataset push reached the Hub"


def _cli(env, *argv):
    return main([*argv, "--debug"])


def _quickstart_without(env, module: str):
    """`hf-distill quickstart` where `module` cannot be imported (a `--no-deps` install, a removed package)."""
    real_find_spec = importlib.util.find_spec
    with mock.patch("importlib.util.find_spec", lambda name, *a: None if name == module else real_find_spec(name, *a)):
        return _cli(env, "quickstart", "--preset", "smoke", "--output_dir", str(env.tmp_path / "qs"),
                    "--cache_dir", str(env.tmp_path))


def _with_closed_endpoint(call):
    """`call()` with the Hub endpoint on a local port nothing listens on, and offline mode off."""
    import socket

    from huggingface_hub import constants

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: connections are refused
    saved = constants.ENDPOINT, constants.HF_HUB_OFFLINE
    constants.ENDPOINT, constants.HF_HUB_OFFLINE = f"http://127.0.0.1:{port}", False
    try:
        return call()
    finally:
        constants.ENDPOINT, constants.HF_HUB_OFFLINE = saved


def _card_over_own_readme(env):
    folder = env.tmp_path / "student"
    shutil.copytree(env.assets.student_folder, folder)
    (folder / "README.md").write_text("# my own notes\n")
    return _cli(env, "card", "--folder", str(folder))


def _recipe(env, content: dict):
    path = env.tmp_path / "recipe.yaml"
    path.write_text(json.dumps(content))  # JSON is YAML
    return main(["train", "--config", str(path), "--debug"])


# -- the catalogue -------------------------------------------------------------------------------------------------

CASES = [
    # Config: every field problem at once, before anything is built.
    Case("E-CONFIG-DIVERGENCE", lambda env: _args(env, divergence="kl"), DistillationConfigError,
         "`divergence` (--divergence) is 'kl'; choose one of: forward_kl"),
    Case("E-CONFIG-ALPHA", lambda env: _args(env, alpha=1.5), DistillationConfigError,
         "`alpha` (--alpha) is 1.5; it must be in [0, 1]"),
    Case("E-CONFIG-BETA", lambda env: _args(env, beta=-0.1), DistillationConfigError, "`beta` (--beta) is -0.1"),
    Case("E-CONFIG-SKEW", lambda env: _args(env, skew=1.0), DistillationConfigError,
         "`skew` (--skew) is 1.0; it must be in [0, 1)"),
    Case("E-CONFIG-TEMPERATURE", lambda env: _args(env, temperature=0), DistillationConfigError,
         "`temperature` (--temperature) is 0; it must be > 0"),
    Case("E-CONFIG-CHUNK", lambda env: _args(env, kd_chunk_size=0), DistillationConfigError,
         "`kd_chunk_size` (--kd_chunk_size) is 0"),
    Case("E-CONFIG-TEACHER-KWARGS-JSON", lambda env: _args(env, teacher_model_init_kwargs="{bad"),
         DistillationConfigError, "`teacher_model_init_kwargs` (--teacher_model_init_kwargs) is not valid JSON"),
    Case("E-CONFIG-CROSS-TOKENIZER", lambda env: _args(env, cross_tokenizer="kl"), DistillationConfigError,
         "`cross_tokenizer` (--cross_tokenizer) is 'kl'; choose one of: uld, span"),
    Case("E-CONFIG-CROSS-TOKENIZER-PACKING", lambda env: _args(env, cross_tokenizer="uld", packing=True),
         DistillationConfigError, "`packing` (--packing) is True, but `cross_tokenizer='uld'` pairs each row's"),
    Case("E-CONFIG-CROSS-TOKENIZER-TRUNCATION",
         lambda env: _args(env, cross_tokenizer="span", truncation_mode="keep_end"), DistillationConfigError,
         "`truncation_mode` (--truncation_mode) is 'keep_end', but `cross_tokenizer='span'` truncates"),
    Case("E-CONFIG-CROSS-TOKENIZER-ON-POLICY", lambda env: _args(env, cross_tokenizer="uld", lmbda=0.5),
         DistillationConfigError, "`lmbda` (--lmbda) is 0.5 and `seq_kd` (--seq_kd) is False, but "
         "`cross_tokenizer='uld'` aligns the two tokenizations of the dataset's own completions"),
    Case("E-TRAINER-CONFIG-FIELD",
         lambda env: env.before_loading(teacher_model_init_kwargs={"dtype": "float32"}),
         ConfigFieldPassedToTrainerError,
         "'teacher_model_init_kwargs' is a field of DistillationConfig, not an argument of DistillationTrainer: pass "
         "`args=DistillationConfig(..., teacher_model_init_kwargs=...)`"),
    Case("E-DATA-MAX-ROWS", lambda env: generate_completions(_NOWHERE, tiny.prompt_completion_dataset(2),
                                                             output_dir=env.tmp_path / "g", max_rows=0),
         RowLimitError, "`max_rows` (--max_rows) is 0; pass a positive number of rows"),
    Case("E-DATA-SHARD-SIZE", lambda env: cache_teacher_logits(_NOWHERE, tiny.prompt_completion_dataset(2),
                                                               tokenizer=env.tokenizer, output_dir=env.tmp_path / "c",
                                                               shard_size=0),
         ShardSizeError, "`shard_size` is 0; it must be >= 1 (rows per shard, e.g. 1000)"),
    Case("E-DATA-GENERATE-SHARD-SIZE", lambda env: generate_completions(_NOWHERE, tiny.prompt_completion_dataset(2),
                                                                        output_dir=env.tmp_path / "g", shard_size=0),
         ShardSizeError, "`shard_size` is 0; it must be >= 1"),
    Case("E-CONFIG-TEACHER-KWARGS", lambda env: _args(env, teacher_model_init_kwargs=5), DistillationConfigError,
         "`teacher_model_init_kwargs` (--teacher_model_init_kwargs) must be a dict"),
    Case("E-CONFIG-ARGS-TYPE",
         lambda env: env.before_loading(args=SFTConfig(output_dir=str(env.tmp_path), report_to="none", bf16=False)),
         NotADistillationConfigError, "`args` must be a `DistillationConfig`, got SFTConfig"),
    Case("E-CONFIG-LOSS-DIVERGENCE", lambda env: distillation_loss(torch.zeros(1, 2, 5), torch.zeros(1, 2, 5),
                                                                   divergence="kl"),
         LossInputError, "Unknown divergence 'kl'. Choose one of"),
    # Data: checked before any model is loaded (the models here do not exist).
    Case("E-DATA-EMPTY",
         lambda env: env.before_loading(train_dataset=Dataset.from_dict({"prompt": [], "completion": []})),
         TrainingDataError, "The train dataset has no rows"),
    Case("E-DATA-EMPTY-EVAL",
         lambda env: env.before_loading(eval_dataset=Dataset.from_dict({"text": []})),
         TrainingDataError, "The eval dataset has no rows"),
    Case("E-DATA-COLUMNS",
         lambda env: env.before_loading(train_dataset=Dataset.from_dict({"question": ["a"], "answer": ["b"]})),
         TrainingDataError, "has columns ['question', 'answer'], none of the formats TRL accepts: `text`"),
    Case("E-DATA-PROMPT-ONLY",
         lambda env: env.before_loading(train_dataset=Dataset.from_dict({"prompt": ["what is 1 add 2"]})),
         TrainingDataError, "has a `prompt` column but no `completion`"),
    Case("E-DATA-EMPTY-COMPLETIONS",
         lambda env: env.before_loading(train_dataset=_empty_completion_rows(env, range(4))),
         TrainingDataError, "Every row of the train dataset (4) has an empty completion"),
    Case("E-DATA-SOME-EMPTY-COMPLETIONS",
         lambda env: env.trainer(train_dataset=_empty_completion_rows(env, [1, 3])), WARNING,
         "2 of 4 rows of the train dataset have an empty completion (rows [1, 3])"),
    Case("E-DATA-EMPTY-ASSISTANT-TURN", _messages_with_empty_answer, WARNING,
         "1 of 4 rows of the train dataset have an empty completion (rows [2])"),
    Case("E-DATA-TRUNCATED", lambda env: _long_prompts(env, max_length=9), WARNING,
         "truncation at max_length=9 (--max_length, keep_start) cut 4 of 4 rows of the train dataset"),
    Case("E-DATA-NOTHING-LEFT", lambda env: _long_prompts(env, max_length=3), TrainingDataError,
         "Nothing to train on: every row of the train dataset loses its whole completion to truncation at "
         "`max_length`=3 (--max_length"),
    Case("E-DATA-CACHE-FORMAT",
         lambda env: tokenize_like_sft(Dataset.from_dict({"question": ["hi"]}), env.tokenizer),
         DatasetFormatError, "none of the TRL formats"),
    Case("E-DATA-GENERATE-NO-PROMPT",
         lambda env: generate_completions(_NOWHERE, tiny.text_dataset(2), output_dir=env.tmp_path / "gen"),
         GenerationSettingsError, "the dataset has no prompts"),
    # Teachers.
    Case("E-TEACHER-NONE", lambda env: env.trainer(teacher_model=None), TeacherSetupError,
         "No teacher: pass `teacher_model=`"),
    Case("E-TEACHER-TYPE", lambda env: env.trainer(teacher_model=3), TeacherTypeError,
         "`teacher_model` must be a Hub id, a local path or a model, got int"),
    Case("E-TEACHER-VOCAB",
         lambda env: env.trainer(teacher_model=tiny.ModelFactory(env.other_tokenizer)("llama", hidden=32),
                                 teacher_processing_class=env.other_tokenizer),
         ValueError, "distil logits across tokenizers with `DistillationConfig(cross_tokenizer=\"span\")`"),
    Case("E-TEACHER-VOCAB-UNKNOWN",
         lambda env: env.trainer(teacher_model=env.models("llama", hidden=32, vocab_size=len(env.tokenizer) + 8)),
         VocabularyMismatchError, "The teacher's tokenizer could not be found, and what can be checked does not match "
         "the student's: the teacher has 392 embedding rows"),
    Case("E-TEACHER-VOCAB-SPECIAL-IDS", _teacher_with_foreign_eos, VocabularyMismatchError,
         "special-token ids [100] that are no special tokens of the student's tokenizer"),
    Case("E-TEACHER-VOCAB-STUDENT-ROWS",
         lambda env: env.trainer(model=env.student(vocab_size=300)), VocabularyMismatchError,
         "The student's vocabulary (300 embedding rows) is smaller than the tokenizer the data is read with"),
    Case("E-TEACHER-PEFT-TRAINABLE",
         lambda env: env.trainer(teacher_model=get_peft_model(env.student(), LoraConfig(target_modules=["q_proj"]))),
         TeacherSetupError, "The teacher is a PEFT model with trainable adapters"),
    Case("E-TEACHER-IS-STUDENT", lambda env: env.trainer(teacher_model=(model := env.student()), model=model),
         ModelSetupError, "`teacher_model` is the student itself"),
    Case("E-TEACHER-SHARED-WEIGHTS", _shared_lm_head, ModelSetupError,
         "The teacher shares 1 parameter tensors with the student (e.g. 'lm_head.weight')"),
    Case("E-TEACHER-REQUIRES-GRAD", lambda env: env.trainer(teacher_model=env.models("llama", hidden=32).train()),
         WARNING, "The teacher is in training mode with"),
    Case("E-TEACHER-NAN", lambda env: _one_step_loss(env.trainer(teacher_model=_nan_teacher(env))),
         NonFiniteTeacherError, "The teacher's final hidden states hold"),
    Case("E-TEACHER-FP16-OVERFLOW",
         lambda env: _one_step_loss(env.trainer(teacher_model=_overflowing_fp16_teacher(env))),
         NonFiniteTeacherError, "The teacher runs in float16, whose range ends at 65,504"),
    Case("E-TEACHER-GGUF-FILE",
         lambda env: env.trainer(model=_NOWHERE, teacher_model=str(env.tmp_path),
                                 args=_args(env, teacher_model_init_kwargs={"gguf_file": "teacher.Q4_K_M.gguf"})),
         GgufFileError, "`gguf_file` 'teacher.Q4_K_M.gguf' is not in"),
    Case("E-TEACHER-PEFT-TARGETS",
         lambda env: env.trainer(teacher_model=env.models("gpt2", hidden=32),
                                 peft_config=LoraConfig(target_modules=["c_attn"])),
         ModelSetupError, "`peft_config.target_modules` ['c_attn'] match no module of the student. They name "
         "modules of the teacher"),
    Case("E-TEACHER-PEFT-TARGETS-PATH",
         lambda env: env.trainer(model=env.models.save(env.tmp_path / "student", "llama", hidden=16, layers=1),
                                 teacher_model=_NOWHERE, peft_config=LoraConfig(target_modules=["c_attn"])),
         ModelSetupError, "match no module of the student. Name the student's modules (down_proj, gate_proj"),
    Case("E-TEACHER-PEFT-STUDENT-ALREADY",
         lambda env: env.trainer(model=get_peft_model(env.student(), LoraConfig(target_modules=["q_proj"])),
                                 peft_config=LoraConfig(target_modules=["q_proj"])),
         ModelSetupError, "The student is already a PeftModel and `peft_config` is given too"),
    Case("E-TEACHER-QUANTIZED-STUDENT",
         lambda env: env.before_loading(
             args=_args(env, model_init_kwargs={"quantization_config": BitsAndBytesConfig(load_in_8bit=True)})),
         ModelSetupError, "The student is quantized (`model_init_kwargs['quantization_config']` is "
         "BitsAndBytesConfig) and no `peft_config` is given"),
    Case("E-TEACHER-PICKLED-WEIGHTS", lambda env: env.trainer(
        teacher_model=env.models.save_pickled(env.tmp_path / "teacher", "llama", hidden=16, layers=1)),
         PickledWeightsError, "`teacher_model` '"),
    Case("E-TEACHER-STUDENT-PICKLED-WEIGHTS",
         lambda env: env.before_loading(
             model=env.models.save_pickled(env.tmp_path / "student", "llama", hidden=16, layers=1)),
         PickledWeightsError, "holds pickled weights only (pytorch_model.bin); hf_distill loads safetensors only"),
    # Cached teacher logits.
    Case("E-CACHE-TOKENIZER",
         lambda env: env.trainer(model=tiny.ModelFactory(env.other_tokenizer)("llama", hidden=16, layers=1),
                                 teacher_model=None, train_dataset=env.assets.cached,
                                 processing_class=env.other_tokenizer),
         CachedDatasetError, "teacher logits were cached with another tokenizer"),
    Case("E-CACHE-NAN", lambda env: env.trainer(teacher_model=None, train_dataset=_nan_cache(env)),
         CachedDatasetError,
         "1 of 4 rows of the train dataset hold NaN/inf cached teacher log-probabilities (rows [1])"),
    Case("E-CACHE-NAN-WRITE",
         lambda env: cache_teacher_logits(_nan_teacher(env), tiny.prompt_completion_dataset(2),
                                          tokenizer=env.tokenizer, output_dir=env.tmp_path / "cache", top_k=4),
         NonFiniteTeacherError, "final hidden states (while caching its logits) hold"),
    Case("E-CACHE-TEMPERATURE",
         lambda env: env.trainer(teacher_model=None, train_dataset=env.assets.cached,
                                 args=_args(env, temperature=2.0)),
         SparseTeacherError, "a cached teacher holds temperature-1 log-probabilities"),
    Case("E-CACHE-PACKING",
         lambda env: env.trainer(teacher_model=None, train_dataset=env.assets.cached, args=_args(env, packing=True)),
         CachedDatasetError, "`packing` (--packing) must be False"),
    Case("E-CACHE-ROW-EDITED",
         lambda env: env.trainer(teacher_model=None, train_dataset=env.assets.cached.map(
             lambda row, i: {"input_ids": row["input_ids"] + [5] * (i == 0)}, with_indices=True)),
         CachedDatasetError, "Row 0 of the train dataset: `teacher_topk` covers"),
    Case("E-CACHE-TOP-K",
         lambda env: cache_teacher_logits(_NOWHERE, tiny.prompt_completion_dataset(2), tokenizer=env.tokenizer,
                                          output_dir=env.tmp_path / "cache", top_k=1000),
         CacheSettingsError, "`top_k` is 1000 but the vocabulary has"),
    Case("E-CACHE-OTHER-SETTINGS",
         lambda env: (env.assets.cached, cache_teacher_logits(
             env.assets.teacher, tiny.prompt_completion_dataset(4), tokenizer=env.tokenizer,
             output_dir=env.assets.root / "cache", top_k=5)),
         ResumeError, "already holds a finished teacher-logits dataset made with other settings"),
    Case("E-CACHE-CORRUPT", _corrupt_finished_cache, CorruptShardError,
         "data-00000-of-00001.arrow does not match its sha256 recorded at write time"),
    Case("E-CACHE-NOT-A-BLOB", lambda env: decode_topk(b"not a blob at all"), CodecError, "bad magic bytes"),
    Case("E-CACHE-SERVED-TOP-K",
         lambda env: cache_teacher_logits(ServedTeacher("http://127.0.0.1:9", top_k=4),
                                          tiny.prompt_completion_dataset(2), tokenizer=env.tokenizer,
                                          output_dir=env.tmp_path / "cache", top_k=8),
         CacheSettingsError, "`top_k` is 8 but the ServedTeacher asks its server for top_k=4"),
    # Served teachers (vLLM / SGLang over HTTP).
    Case("E-SERVED-SETTINGS", lambda env: ServedTeacher("http://127.0.0.1:9", kind="tgi"), ServedTeacherError,
         "`kind` is 'tgi'; choose one of vllm, sglang"),
    Case("E-SERVED-API-KEY", lambda env: ServedTeacher("http://127.0.0.1:9", api_key_env="HF_DISTILL_UNSET_KEY"),
         ServedTeacherError, "`api_key_env` is 'HF_DISTILL_UNSET_KEY', but that environment variable is unset"),
    Case("E-SERVED-UNREACHABLE",
         lambda env: env.trainer(teacher_model=ServedTeacher("http://127.0.0.1:9", max_retries=0)),
         ServedTeacherUnavailable,
         "The teacher server at http://127.0.0.1:9 did not answer GET /v1/models after 1 tries; last: connection"),
    Case("E-SERVED-TOP-K-CAP", lambda env: env.trainer(teacher_model=ServedTeacher(env.served_url, top_k=21)),
         ServedTeacherError, "returns at most 20 log-probs per position (its `--max-logprobs`)"),
    Case("E-SERVED-TOKENIZER",
         lambda env: env.trainer(model=tiny.ModelFactory(env.other_tokenizer)("llama", hidden=16, layers=1),
                                 teacher_model=ServedTeacher(env.served_url, top_k=4),
                                 processing_class=env.other_tokenizer),
         ServedTeacherError, "they are different tokenizers, and logit distillation needs a shared one"),
    Case("E-SERVED-PADDING-FREE",
         lambda env: env.trainer(teacher_model=ServedTeacher(env.served_url, top_k=4),
                                 args=_args(env, padding_free=True, max_length=None)),
         ServedTeacherError, "`padding_free` (--padding_free) is True, but a served teacher scores each row"),
    # On-policy distillation (`lmbda` > 0, `seq_kd`).
    Case("E-ONPOLICY-LMBDA", lambda env: _args(env, lmbda=1.5), DistillationConfigError,
         "`lmbda` (--lmbda) is 1.5; it must be in [0, 1]"),
    Case("E-ONPOLICY-MAX-NEW-TOKENS", lambda env: _args(env, lmbda=0.5, max_new_tokens=0), DistillationConfigError,
         "`max_new_tokens` (--max_new_tokens) is 0; it must be >= 1"),
    Case("E-ONPOLICY-TEMPERATURE", lambda env: _args(env, generation_temperature=-1.0), DistillationConfigError,
         "`generation_temperature` (--generation_temperature) is -1.0; it must be >= 0"),
    Case("E-ONPOLICY-TOP-P", lambda env: _args(env, generation_top_p=0.0), DistillationConfigError,
         "`generation_top_p` (--generation_top_p) is 0.0; it must be in (0, 1]"),
    Case("E-ONPOLICY-TOP-K", lambda env: _args(env, generation_top_k=-1), DistillationConfigError,
         "`generation_top_k` (--generation_top_k) is -1; it must be >= 0"),
    Case("E-ONPOLICY-PACKING", lambda env: _args(env, lmbda=0.5, packing=True), DistillationConfigError,
         "`packing` (--packing) is True with `lmbda` 0.5 / `seq_kd` False: sampled completions replace"),
    Case("E-ONPOLICY-CACHED-TEACHER",
         lambda env: env.before_loading(teacher_model=None, train_dataset=env.assets.cached,
                                        args=_args(env, lmbda=0.5)),
         OnPolicyError, "but the teacher is CachedTopKTeacher, which holds targets for the dataset's rows only"),
    Case("E-ONPOLICY-SEQ-KD-SERVED",
         lambda env: env.before_loading(teacher_model=ServedTeacher("http://127.0.0.1:9"),
                                        args=_args(env, seq_kd=True)),
         OnPolicyError, "`seq_kd` (--seq_kd) is True, but the teacher (ServedTeacher) is not a model in this process"),
    Case("E-ONPOLICY-NO-PROMPT",
         lambda env: env.trainer(train_dataset=tiny.text_dataset(4), args=_args(env, lmbda=0.5)),
         OnPolicyError, "but the train dataset's rows have no prompt (their first token is trained on)"),
    Case("E-ONPOLICY-FSDP",
         lambda env: OnPolicyBatches(_args(env, lmbda=0.5), LocalModelTeacher(env.assets.teacher)).setup(
             SimpleNamespace(is_fsdp_enabled=True)),
         OnPolicyError, "`lmbda` (--lmbda) is 0.5 / `seq_kd` (--seq_kd) is False under FSDP: sampling needs"),
    # Licences (the push pre-flight: nothing reaches the Hub).
    # Across tokenizers (`cross_tokenizer=`): before the teacher is loaded, except the chat template (data prep).
    Case("E-XTOK-SERVED", lambda env: env.before_loading(teacher_model="http://127.0.0.1:9",
                                                         args=_args(env, cross_tokenizer="uld")),
         CrossTokenizerError, "a served teacher (vLLM/SGLang) returns top-k log-probabilities over its own tokens"),
    Case("E-XTOK-CACHED", lambda env: env.before_loading(teacher_model=None, train_dataset=env.assets.cached,
                                                         args=_args(env, cross_tokenizer="uld")),
         CrossTokenizerError, "with a cached teacher needs a cache written across tokenizers, and this one was "
                              "written with one tokenizer for both models"),
    Case("E-XTOK-CACHE-UNSET",
         lambda env: env.before_loading(teacher_model=None, train_dataset=env.assets.cross_cached),
         CachedDatasetError, "The training data is a cross-tokenizer cache (written with `student_tokenizer=`"),
    Case("E-XTOK-CACHE-STUDENT",
         lambda env: env.trainer(model=tiny.ModelFactory(env.other_tokenizer)("llama", hidden=16, layers=1),
                                 teacher_model=None, train_dataset=env.assets.cross_cached,
                                 processing_class=env.other_tokenizer, args=_args(env, cross_tokenizer="uld")),
         CachedDatasetError, "cross-tokenizer cache was written for another student tokenizer"),
    Case("E-XTOK-CACHE-TEACHER",
         lambda env: env.before_loading(teacher_model=None, train_dataset=env.assets.cross_cached,
                                        teacher_processing_class=env.tokenizer,
                                        args=_args(env, cross_tokenizer="span")),
         CrossTokenizerError, "was written with a teacher tokenizer of hash"),
    Case("E-XTOK-CACHE-SPAN-TOKENIZER",
         lambda env: env.before_loading(teacher_model=None, train_dataset=env.assets.cross_cached,
                                        args=_args(env, cross_tokenizer="span")),
         CrossTokenizerError, "`cross_tokenizer='span'` (--cross_tokenizer) with a cached teacher needs the "
                              "teacher's tokenizer"),
    Case("E-XTOK-CACHE-DATA",
         lambda env: cache_teacher_logits(env.assets.teacher, tiny.text_dataset(4), tokenizer=env.other_tokenizer,
                                          student_tokenizer=env.tokenizer, output_dir=env.tmp_path / "c"),
         CacheSettingsError, "`student_tokenizer=` (a cache across tokenizers) cannot be used here: the dataset "
                             "has columns ['text']"),
    Case("E-XTOK-DATA-FORMAT", lambda env: env.before_loading(train_dataset=tiny.text_dataset(4),
                                                              args=_args(env, cross_tokenizer="span")),
         CrossTokenizerError, "matching positions by text needs `prompt` and `completion` columns"),
    Case("E-XTOK-NO-TOKENIZER", lambda env: env.before_loading(args=_args(env, cross_tokenizer="span")),
         CrossTokenizerError, "`cross_tokenizer=` needs the teacher's own tokenizer, and it could not be found"),
    Case("E-XTOK-NO-CHAT-TEMPLATE", _cross_tokenizer_without_template, CrossTokenizerError,
         "The teacher's tokenizer has no chat template, and the data is conversational"),
    Case("E-LICENSE-CONFLICT",
         lambda env: _push(env, teacher_license="gemma", student_license="apache-2.0"),
         LicenseConflictError, "Licence conflict: pushing 'tester/student' as configured is not allowed"),
    Case("E-LICENSE-NAME-PREFIX", lambda env: _push(env, teacher_license="llama3.1"),
         LicenseConflictError, "The student's name 'student' must start with 'Llama' (e.g. Llama-student)"),
    # Push.
    Case("E-PUSH-REPO-ID", lambda env: validate_repo_id("no-namespace"), PushError,
         "`repo_id` is 'no-namespace': it must be `namespace/name`"),
    Case("E-PUSH-REPO-ID-CHARS", lambda env: _push(env, "me/bad name!"), PushError, "`repo_id` is 'me/bad name!'"),
    Case("E-PUSH-MODE", lambda env: _push(env, mode="quantized"), PushError,
         "`mode` is 'quantized'; choose one of full, adapter, merged"),
    Case("E-PUSH-TOKEN", lambda env: _push(env, token=None), HubAuthError, "No Hugging Face token: pass `token=`"),
    Case("E-PUSH-FOLDER", lambda env: push_student(env.tmp_path / "missing", "me/x", token="hf_x"), PushError,
         "does not exist; save the student there first"),
    Case("E-PUSH-NO-PROVENANCE", lambda env: Provenance.load(env.tmp_path), ProvenanceError,
         "does not exist. Save the student with `DistillationTrainer.save_model()`"),
    Case("E-PUSH-NO-REPO", lambda env: env.trainer().push_to_hub(), PushError,
         "No repo id: pass `push_to_hub('namespace/name')` or set `hub_model_id`"),
    Case("E-PUSH-DATASET-SECRETS",
         lambda env: _push_dataset(env, Dataset.from_dict({"text": ["my key: hf_" + "a1B2c3D4" * 5]})),
         PrivateDataError, "Refusing to publish"),
    Case("E-PUSH-DATASET-TOKEN-IDS", lambda env: _push_dataset(env, env.assets.cached), DatasetPushError,
         "holds token ids and no text, so it cannot be scanned for secrets without its tokenizer"),
    # Space.
    Case("E-SPACE-HARDWARE",
         lambda env: create_space(env.assets.student_folder, output_dir=env.tmp_path / "space", hardware="gpu-huge"),
         SpaceConfigError, "`hardware`='gpu-huge' is not a Space hardware flavour"),
    Case("E-SPACE-ID", lambda env: create_space(env.assets.student_folder, output_dir=env.tmp_path / "space",
                                                space_id="demo"),
         SpaceConfigError, "`space_id` is 'demo': it must be `namespace/name`"),
    # CLI (with --debug the exception itself; without, one line on stderr and exit status 1).
    Case("E-CLI-QUICKSTART-PACKAGE", lambda env: _quickstart_without(env, "matplotlib"), QuickstartError,
         "the quickstart needs the package `matplotlib`, which is not installed: run `python -m pip install "
         "matplotlib`"),
    Case("E-CLI-MISSING-OPTION", lambda env: _cli(env, "generate"), CliUsageError,
         "`hf-distill generate` needs --teacher, --dataset_name, --output_dir"),
    Case("E-CLI-JSON",
         lambda env: _cli(env, "generate", "--teacher", "t", "--dataset_name", "d", "--output_dir", "o",
                          "--teacher_model_init_kwargs", "{bad"),
         CliUsageError, "--teacher_model_init_kwargs is not a JSON object"),
    Case("E-CLI-STUDENT-TOKENIZER",
         lambda env: _cli(env, "cache-logits", "--teacher", "t", "--dataset_name", "d", "--output_dir", "o",
                          "--student_tokenizer", str(env.tmp_path)),
         CliUsageError, "holds no tokenizer: give the Hub id or folder of the student's tokenizer"),
    Case("E-CLI-RECIPE-MISSING", lambda env: _cli(env, "train", "--config", str(env.tmp_path / "missing.yaml")),
         RecipeError, "missing.yaml' does not exist"),
    Case("E-CLI-RECIPE-KEY", lambda env: _recipe(env, {"divergenc": "jsd", "output_dir": "o"}), RecipeError,
         "'divergenc' (did you mean 'divergence'?)"),
    Case("E-CLI-CONFIG-VALUE", lambda env: _cli(env, "train", "--alpha", "2", "--output_dir", "o"),
         DistillationConfigError, "`alpha` (--alpha) is 2.0; it must be in [0, 1]"),
    Case("E-CLI-UNKNOWN-COMMAND", lambda env: main(["no-such-command"]), SystemExit, "2"),
    Case("E-CLI-UNKNOWN-OPTION", lambda env: _cli(env, "train", "--learnig_rate", "1e-4"), RecipeError,
         "`hf-distill train` has no option '--learnig_rate' (did you mean --learning_rate?)"),
    Case("E-CLI-HUB-UNREACHABLE", lambda env: _with_closed_endpoint(
        lambda: _cli(env, "train", "--model_name_or_path", "org/student", "--dataset_name", "org/data",
                     "--output_dir", str(env.tmp_path / "o"))),
         HubUnreachableError, "or set HF_HUB_OFFLINE=1 to use models and datasets already in the local cache"),
    Case("E-CLI-CARD-EXISTS", lambda env: _card_over_own_readme(env), CliUsageError,
         "README.md exists and was not written by hf-distill: pass --overwrite to replace it"),
    # Benchmark.
    Case("E-BENCH-NO-DATASET", lambda env: benchmark(_NOWHERE, dataset=None, tokenizer=env.tokenizer),
         BenchmarkInputError, "`dataset` is None: the benchmark needs held-out examples"),
    Case("E-BENCH-TEXT-DATASET",
         lambda env: benchmark(_NOWHERE, dataset=tiny.text_dataset(2), tokenizer=env.tokenizer),
         BenchmarkInputError, "(a `text` dataset has no reference completions to score)"),
    # init_student: before the teacher's weights load.
    Case("E-INIT-NUM-LAYERS", lambda env: init_student(env.models("llama", layers=4), num_layers=0),
         StudentInitError, "`num_layers` (--num_layers) is 0, but the teacher has 4 layers: choose a whole number"),
    Case("E-INIT-STRATEGY", lambda env: init_student(env.models("llama", layers=4), strategy="random"),
         StudentInitError, "`strategy` (--strategy) is 'random'; choose one of every_other, uniform, first, last."),
    Case("E-INIT-EVERY-OTHER", lambda env: init_student(env.models("llama", layers=4), num_layers=3),
         StudentInitError, "`strategy='every_other'` keeps layers 0, 2, 4, ... of the teacher's 4: that is 2 layers"),
    Case("E-BENCH-TRUST-PRICE", lambda env: benchmark(_NOWHERE, dataset=tiny.prompt_completion_dataset(2),
                                                      tokenizer=env.tokenizer, trust=TrustConfig(price_per_hour=-1)),
         BenchmarkInputError, "`trust.price_per_hour` (--trust_price_per_hour) must be > 0, got -1"),
    Case("E-BENCH-TRUST-PERTURBATION",
         lambda env: benchmark(_NOWHERE, dataset=tiny.prompt_completion_dataset(2), tokenizer=env.tokenizer,
                               trust=TrustConfig(robustness=True, perturbations=("typo",))),
         BenchmarkInputError, "`trust.perturbations` has unknown kinds ['typo']"),
    Case("E-TRUST-CANARY-TEMPLATE", lambda env: make_canaries((1, 10), template="my code"), BenchmarkInputError,
         "Canary `template` 'my code' has no `{secret}` field"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case, env, caplog):
    if case.error == WARNING:
        with caplog.at_level(logging.WARNING):
            case.make(env)
        assert case.message in caplog.text
        return
    with pytest.raises(case.error) as raised:
        case.make(env)
    assert case.message in str(raised.value)


def test_case_ids_are_unique_and_match_the_doc():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert all(ID_PATTERN.fullmatch(case_id) for case_id in ids)
    documented = set(ID_PATTERN.findall(DOC.read_text(encoding="utf-8")))
    assert sorted(set(ids) - documented) == [], "cases missing from docs/errors.md"
    assert sorted(documented - set(ids)) == [], "ids in docs/errors.md without a test case"


def test_catalogue_covers_every_area():
    areas = {case.id.split("-")[1] for case in CASES}
    assert {"CONFIG", "DATA", "TEACHER", "CACHE", "LICENSE", "PUSH", "SPACE", "CLI", "BENCH"} <= areas
    assert len(CASES) >= 25


# -- what the reports hold -----------------------------------------------------------------------------------------


def test_truncation_report_counts_what_is_cut(env):
    data = tiny.prompt_completion_dataset(8)
    trainer = env.trainer(args=_args(env, max_length=14), train_dataset=data)
    lengths = [len(row["input_ids"]) for row in tokenize_like_sft(data, env.tokenizer)]
    masks = [row["completion_mask"] for row in tokenize_like_sft(data, env.tokenizer)]
    kept = [sum(mask[:14]) for mask in masks]
    report = trainer.truncation_report
    assert report.num_rows == 8 and report.max_num_tokens == max(lengths)
    assert report.num_truncated == sum(n > 14 for n in lengths) > 0
    assert report.num_completions_lost == sum(k == 0 for k in kept)
    assert report.num_completions_cut == sum(0 < k < sum(m) for k, m in zip(kept, masks, strict=True))
    assert report.num_trained_tokens_cut == sum(sum(m) for m in masks) - sum(kept)
    # Same rows and tokens as TRL's own truncation.
    assert len(trainer.train_dataset) == 8 - report.num_completions_lost
    assert all(len(row["input_ids"]) <= 14 for row in trainer.train_dataset)


def test_truncated_rows_match_trl(env):
    from trl import SFTTrainer

    data = tiny.prompt_completion_dataset(8)
    ours = env.trainer(args=_args(env, max_length=14, shuffle_dataset=False, bf16=False), train_dataset=data)
    trl = SFTTrainer(model=env.student(), args=SFTConfig(output_dir=str(env.tmp_path / "trl"), report_to="none",
                                                         max_length=14, shuffle_dataset=False, bf16=False),
                     train_dataset=data, processing_class=env.tokenizer)
    assert ours.train_dataset["input_ids"] == trl.train_dataset["input_ids"]
    assert ours.train_dataset["labels"] == trl.train_dataset["labels"]


def test_no_truncation_no_report(env):
    trainer = env.trainer(args=_args(env, max_length=None))
    assert trainer.truncation_report is None
    assert env.trainer().truncation_report.num_truncated == 0


def test_empty_completions_are_counted_on_the_trainer(env):
    trainer = env.trainer(train_dataset=_empty_completion_rows(env, [0]))
    assert trainer.empty_completions["train"].rows == [0]


def test_a_trainable_teacher_is_frozen(env):
    teacher = env.models("llama", hidden=32).train()
    trainer = env.trainer(teacher_model=teacher)
    assert not trainer.teacher.model.training
    assert not any(p.requires_grad for p in trainer.teacher.model.parameters())


def test_a_pretrained_teacher_is_frozen_without_warning(env, caplog):
    teacher = copy.deepcopy(env.assets.teacher)  # eval mode, as `from_pretrained` returns it
    with caplog.at_level(logging.WARNING):
        env.trainer(teacher_model=teacher)
    assert "training mode" not in caplog.text


def test_a_quantization_config_that_quantizes_nothing_is_accepted(env):
    # TRL's `get_quantization_config` gives None then, but a hand-made BitsAndBytesConfig() sets neither flag: the
    # student is not quantized, so the run gets as far as loading it (which fails here: it does not exist).
    args = _args(env, model_init_kwargs={"quantization_config": BitsAndBytesConfig()})
    with pytest.raises(Exception) as raised:
        env.before_loading(args=args)
    assert not isinstance(raised.value, ModelSetupError)
