"""GGUF checkpoints (llama.cpp's single-file format) as teachers and students.

transformers reads a GGUF file when `from_pretrained` gets `gguf_file=` (the folder or Hub id stays the first
argument) and dequantises it to ordinary float weights; the tokenizer and chat template are read from the same file.
hf_distill passes `gguf_file` through wherever it loads a model or a tokenizer, records the file's SHA-256 and
quantisation type in the provenance, and drops the GGUF marker before a model is saved, since the saved weights are
plain safetensors.
"""

from __future__ import annotations

import collections
import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .errors import HfDistillError, MissingDependencyError

__all__ = [
    "GGUF_KWARG", "GgufFileError", "GgufSource", "convert_gguf", "detach_gguf_quantizer", "gguf_file_of",
    "gguf_source", "gguf_tokenizer_kwargs", "load_causal_lm", "load_gguf_student", "load_gguf_tokenizer",
    "resolve_gguf_path",
]

#: The `from_pretrained` keyword (in `model_init_kwargs`, `teacher_model_init_kwargs`, `model_kwargs`) naming the file.
GGUF_KWARG = "gguf_file"
_INSTALL_HINT = (
    'GGUF files need the `gguf` package: '
    '`pip install gguf` (or, from an hf_distill clone, `pip install -e ".[gguf]"`).'
)


class GgufFileError(HfDistillError, ValueError):
    """A `gguf_file` that cannot be found or read."""


@dataclass(frozen=True)
class GgufSource:
    """The GGUF file a model was dequantised from.

    Args:
        file_name (`str`): the file's name (never the full local path).
        sha256 (`str`): SHA-256 of the file's bytes.
        file_type (`str`): llama.cpp's `general.file_type`, e.g. `"MOSTLY_Q4_1"` (`"unknown"` when absent).
        tensor_types (`dict[str, int]`): number of tensors stored in each GGML type, e.g. `{"Q4_1": 210, "F32": 61}`.
    """

    file_name: str
    sha256: str
    file_type: str
    tensor_types: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def summary(self) -> str:
        """One line for a card: `SmolLM2.Q4_1.gguf (MOSTLY_Q4_1, sha256 b179c952…)`."""
        return f"`{self.file_name}` ({self.file_type}, sha256 `{self.sha256}`)"


def gguf_file_of(init_kwargs: dict[str, Any] | None) -> str | None:
    """The `gguf_file` of `from_pretrained` keyword arguments, if any."""
    value = (init_kwargs or {}).get(GGUF_KWARG)
    return str(value) if value else None


def resolve_gguf_path(source: str | os.PathLike, gguf_file: str) -> Path:
    """The local path of `gguf_file` inside `source` (a folder or a Hub id, then from the Hub cache or download).

    Raises [`GgufFileError`] when the file is not there, naming both and the fix.
    """
    folder = Path(source)
    if folder.is_dir():
        path = folder / gguf_file
        if path.is_file():
            return path
        found = sorted(p.name for p in folder.glob("*.gguf"))
        raise GgufFileError(
            f"`gguf_file` {gguf_file!r} is not in {str(source)!r} (GGUF files there: {found or 'none'}). Pass the "
            "folder as the model and the file's name inside it as `gguf_file`, e.g. "
            "`teacher_model_init_kwargs={'gguf_file': 'model.Q4_K_M.gguf'}`."
        )
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(str(source), gguf_file))
    except Exception as error:  # offline, missing repo or file: say which
        raise GgufFileError(
            f"`gguf_file` {gguf_file!r} could not be found for {str(source)!r} ({type(error).__name__}). Pass a local "
            "folder holding the file, or a Hub id whose repo has it."
        ) from error


def gguf_source(path: str | os.PathLike) -> GgufSource:
    """Read the SHA-256, `general.file_type` and tensor types of the GGUF file at `path`."""
    try:
        import gguf
    except ImportError as error:
        raise MissingDependencyError(_INSTALL_HINT) from error
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as error:  # a truncated or foreign file: name it before transformers fails obscurely
        raise GgufFileError(
            f"{str(path)!r} is not a readable GGUF file ({error}). Check the download (its SHA-256) or the file name."
        ) from error
    field_ = reader.fields.get("general.file_type")
    file_type = "unknown"
    if field_ is not None:
        value = int(field_.contents())
        known = {member.value: member.name for member in gguf.LlamaFileType}
        file_type = known.get(value, str(value))
    tensor_types = collections.Counter(tensor.tensor_type.name for tensor in reader.tensors)
    return GgufSource(
        file_name=Path(path).name, sha256=_sha256(path), file_type=file_type, tensor_types=dict(tensor_types)
    )


def _sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_gguf_tokenizer(source: str | os.PathLike, gguf_file: str):
    """The tokenizer (with its chat template) stored in the GGUF file."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(source), gguf_file=gguf_file)


def gguf_tokenizer_kwargs(init_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """`AutoTokenizer.from_pretrained` kwargs reading the tokenizer of a model given with `gguf_file`, else none."""
    gguf_file = gguf_file_of(init_kwargs)
    return {GGUF_KWARG: gguf_file} if gguf_file else {}


def load_gguf_student(source: str | os.PathLike, init_kwargs: dict[str, Any], processing_class=None):
    """A student given as a GGUF file, dequantised here (TRL would keep the GGUF quantizer attached, and transformers
    refuses to train a quantized model), and its tokenizer (`processing_class`, else the file's)."""
    model = load_causal_lm(source, init_kwargs)
    if processing_class is None:
        processing_class = load_gguf_tokenizer(source, init_kwargs[GGUF_KWARG])
    return model, processing_class


def prepare_gguf_kwargs(source: str | os.PathLike, init_kwargs: dict[str, Any]) -> tuple[dict[str, Any], GgufSource]:
    """`from_pretrained` kwargs for a GGUF load and the file's [`GgufSource`] (read before the slow dequantisation,
    so a wrong name fails fast). `use_safetensors` is dropped: the weights come from the GGUF file, which holds no
    code."""
    source_info = gguf_source(resolve_gguf_path(source, init_kwargs[GGUF_KWARG]))
    kwargs = {key: value for key, value in init_kwargs.items() if key != "use_safetensors"}
    return kwargs, source_info


def detach_gguf_quantizer(model: nn.Module) -> nn.Module:
    """Drop the GGUF marker transformers leaves on a dequantised model (its `hf_quantizer` and
    `config.quantization_config`, `is_quantized`): the weights are plain floats, yet `save_pretrained` and `Trainer`
    refuse a model so marked."""
    model.hf_quantizer = None
    model.is_quantized = False  # what `Trainer` reads to refuse training a quantized model
    config = getattr(model, "config", None)
    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config
    return model


def load_causal_lm(source: str | os.PathLike, init_kwargs: dict[str, Any]) -> nn.Module:
    """`AutoModelForCausalLM.from_pretrained(source, **init_kwargs)`; with a `gguf_file` the model is dequantised,
    stripped of the GGUF marker and carries the file's [`GgufSource`] as `model.gguf_source` (for the provenance)."""
    from transformers import AutoModelForCausalLM

    if gguf_file_of(init_kwargs) is None:
        return AutoModelForCausalLM.from_pretrained(str(source), **init_kwargs)
    kwargs, info = prepare_gguf_kwargs(source, init_kwargs)
    model = detach_gguf_quantizer(AutoModelForCausalLM.from_pretrained(str(source), **kwargs))
    model.gguf_source = info
    return model


def convert_gguf(
    source: str | os.PathLike, gguf_file: str, output_dir: str | os.PathLike, *, dtype: str = "float32"
) -> Path:
    """Dequantise a GGUF checkpoint once into a safetensors folder (model and tokenizer), which then loads in a
    fraction of the time. Returns `output_dir`."""
    tokenizer = load_gguf_tokenizer(source, gguf_file)
    model = load_causal_lm(source, {GGUF_KWARG: gguf_file, "dtype": dtype})
    model.config.gguf_source = model.gguf_source.to_dict()  # the converted folder still says which file it came from
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return Path(output_dir)
