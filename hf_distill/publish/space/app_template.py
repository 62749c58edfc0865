"""Gradio app of a distilled student and its teacher, written by `hf_distill.hub.create_space` as a Space's `app.py`.

The same prompt goes to the student and then to the teacher; both answers stream side by side, each with its time
to first token, total time, tokens per second and model size, above the benchmark table of the student's card.
The models run one after the other, never at once, so that neither's timings are inflated by the other's load.

Which models to load (first match wins):

| setting | environment variable (Space variable) | default |
|---|---|---|
| student (Hub id or local path) | `HF_DISTILL_STUDENT` | `student` in `space_config.json`, written at generation |
| teacher (Hub id or local path; empty: none) | `HF_DISTILL_TEACHER` | `teacher` in `space_config.json` |
| default new tokens | `HF_DISTILL_MAX_NEW_TOKENS` | 64 on CPU, 256 on GPU |
| device (`cpu`, `cuda`, ...) | `HF_DISTILL_DEVICE` | `cuda` on GPU and ZeroGPU hardware, else `cpu` |
| dtype (`float32`, `bfloat16`, `float16`) | `HF_DISTILL_DTYPE` | `float32` on CPU, `bfloat16`/`float16` on GPU |

This file needs only torch, transformers and gradio (plus peft for an adapter student); it never imports hf_distill,
so it runs unchanged on a Space. Run it with `python app.py`; tests import it and call `build_demo(...)`.
"""

from __future__ import annotations

try:  # ZeroGPU hardware: `spaces` must be imported before torch initialises CUDA.
    import spaces
except ImportError:
    spaces = None

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

HERE = Path(__file__).resolve().parent
CONFIG_FILE = "space_config.json"
BENCHMARK_FILE = "benchmark.md"
ENV_STUDENT = "HF_DISTILL_STUDENT"
ENV_TEACHER = "HF_DISTILL_TEACHER"
ENV_MAX_NEW_TOKENS = "HF_DISTILL_MAX_NEW_TOKENS"
ENV_DEVICE = "HF_DISTILL_DEVICE"
ENV_DTYPE = "HF_DISTILL_DTYPE"
CPU_MAX_NEW_TOKENS = 64
GPU_MAX_NEW_TOKENS = 256
MAX_NEW_TOKENS_LIMIT = 1024
# Queue: one generation at a time (see `build_demo`), and room for a burst of visitors. Gradio's default `max_size`
# is unlimited, except on ZeroGPU Spaces where `demo.queue()` turns it into 1, so a burst there would answer
# "queue is full" to all but two visitors. A bound still caps how long the last visitor in line waits.
GENERATE_CONCURRENCY_LIMIT = 1
QUEUE_MAX_SIZE = 100
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_BENCHMARK_HEADING = re.compile(r"benchmark|evaluation|results", re.IGNORECASE)
_RELATIVE_IMAGE = re.compile(r"!\[[^\]]*\]\((?!https?://)[^)]*\)$")


def on_zero_gpu() -> bool:
    """Whether this runs on ZeroGPU hardware, where CUDA only attaches inside `@spaces.GPU` functions."""
    return spaces is not None and os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


@dataclass
class AppSettings:
    """What the app loads and how it generates; `AppSettings.load()` reads `space_config.json` then the environment.

    Args:
        student (`str`): Hub id or local path of the student.
        teacher (`str`, *optional*): Hub id or local path of the teacher; `None` shows the student alone.
        title (`str`, *optional*): Page title.
        max_new_tokens (`int`, *optional*): Default number of new tokens; `None` picks 64 on CPU, 256 on GPU.
        device (`str`, *optional*): Torch device; `None` picks `cuda` when available (or on ZeroGPU), else `cpu`.
        dtype (`str`, *optional*, defaults to `"auto"`): `float32` on CPU and `bfloat16`/`float16` on GPU when `auto`.
        benchmark_markdown (`str`, *optional*): The benchmark table to show; `None` reads it from the card.

    Example:

    ```python
    >>> settings = AppSettings(student="./my-student", teacher=None, max_new_tokens=8)
    >>> demo = build_demo(settings)  # doctest: +SKIP
    ```
    """

    student: str
    teacher: str | None = None
    title: str = "Distilled student vs teacher"
    max_new_tokens: int | None = None
    device: str | None = None
    dtype: str = "auto"
    benchmark_markdown: str | None = None

    @classmethod
    def load(cls, folder: str | Path = HERE, environ=None) -> AppSettings:
        environ = os.environ if environ is None else environ
        path = Path(folder) / CONFIG_FILE
        config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        student = environ.get(ENV_STUDENT) or config.get("student")
        if not student:
            raise ValueError(f"No student model: set the {ENV_STUDENT} variable to a Hub id or a local path.")
        # An empty HF_DISTILL_TEACHER switches the teacher off.
        teacher = environ[ENV_TEACHER] if ENV_TEACHER in environ else config.get("teacher")
        max_new_tokens = environ.get(ENV_MAX_NEW_TOKENS) or config.get("max_new_tokens")
        benchmark_path = Path(folder) / BENCHMARK_FILE
        return cls(
            student=student,
            teacher=teacher or None,
            title=config.get("title", cls.title),
            max_new_tokens=int(max_new_tokens) if max_new_tokens else None,
            device=environ.get(ENV_DEVICE) or config.get("device"),
            dtype=environ.get(ENV_DTYPE) or config.get("dtype", "auto"),
            benchmark_markdown=benchmark_path.read_text(encoding="utf-8") if benchmark_path.is_file() else None,
        )

    def resolved_device(self) -> str:
        if self.device:
            return self.device
        return "cuda" if on_zero_gpu() or torch.cuda.is_available() else "cpu"

    def resolved_dtype(self) -> torch.dtype:
        if self.dtype != "auto":
            if self.dtype not in _DTYPES:
                raise ValueError(f"{ENV_DTYPE}={self.dtype!r} is not one of {sorted(_DTYPES)} (or 'auto').")
            return _DTYPES[self.dtype]
        if self.resolved_device() == "cpu":
            return torch.float32  # half precision is slow or unsupported on most CPUs
        if on_zero_gpu() or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16

    def resolved_max_new_tokens(self) -> int:
        if self.max_new_tokens:
            return self.max_new_tokens
        return CPU_MAX_NEW_TOKENS if self.resolved_device() == "cpu" else GPU_MAX_NEW_TOKENS


@dataclass
class LoadedModel:
    """A model and its tokenizer, ready to generate, with its size.

    Args:
        name (`str`): Hub id or local path it was loaded from.
        model (`PreTrainedModel`): The causal LM in eval mode on its device.
        tokenizer (`PreTrainedTokenizerBase`): Its tokenizer.
        num_parameters (`int`): Unique parameters (tied weights counted once).
        num_bytes (`int`): Memory taken by parameters and buffers.
    """

    name: str
    model: object
    tokenizer: object
    num_parameters: int
    num_bytes: int

    @classmethod
    def load(cls, name: str, *, device: str, dtype: torch.dtype) -> LoadedModel:
        # transformers loads a PEFT adapter folder or repo here too when peft is installed.
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(_tokenizer_source(name, model))
        return cls(name, model, tokenizer, model.num_parameters(), model.get_memory_footprint())

    @property
    def dtype(self) -> str:
        return str(self.model.dtype).removeprefix("torch.")


def _tokenizer_source(name: str, model) -> str:
    """An adapter saved without its tokenizer uses the base model's."""
    try:
        AutoTokenizer.from_pretrained(name)
        return name
    except (OSError, ValueError):
        base = getattr(getattr(model, "peft_config", {}).get("default"), "base_model_name_or_path", None)
        if base is None:
            raise
        return base


@dataclass
class GenerationStats:
    """Timings of one streamed answer.

    Args:
        time_to_first_token_s (`float`): Seconds from the call to the first new token.
        total_s (`float`): Seconds from the call to the last token.
        num_new_tokens (`int`): Tokens generated (the end-of-sequence token included).
    """

    time_to_first_token_s: float | None = None
    total_s: float | None = None
    num_new_tokens: int = 0

    @property
    def tokens_per_second(self) -> float | None:
        if not self.total_s or not self.num_new_tokens:
            return None
        return self.num_new_tokens / self.total_s


class _TimedStreamer(TextIteratorStreamer):
    """A text streamer that also records when the first new token arrived and how many came."""

    def __init__(self, tokenizer, start: float):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.start = start
        self.stats = GenerationStats()

    def put(self, value):
        if not self.next_tokens_are_prompt:  # the first call carries the prompt
            if self.stats.time_to_first_token_s is None:
                self.stats.time_to_first_token_s = time.perf_counter() - self.start
            self.stats.num_new_tokens += value.numel()
        super().put(value)


def _prompt_ids(loaded: LoadedModel, prompt: str) -> torch.Tensor:
    """Token ids `(1, seq)` of the prompt, through the chat template when the tokenizer has one."""
    tokenizer = loaded.tokenizer
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    else:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
    return ids.to(loaded.model.device)


def stream_answer(loaded: LoadedModel, prompt: str, max_new_tokens: int) -> Iterator[tuple[str, GenerationStats]]:
    """Greedy generation in a thread; yields `(answer so far, stats so far)` as words complete."""
    input_ids = _prompt_ids(loaded, prompt)
    tokenizer = loaded.tokenizer
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    start = time.perf_counter()
    streamer = _TimedStreamer(tokenizer, start)
    errors = []

    def generate():
        try:
            with torch.inference_mode():
                loaded.model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=pad_token_id,
                    streamer=streamer,
                )
        except Exception as error:  # re-raised below: a thread's exception would otherwise leave the stream hanging
            errors.append(error)
            streamer.end()

    thread = threading.Thread(target=generate, daemon=True)
    thread.start()
    answer = ""
    for piece in streamer:
        if piece:  # the streamer also emits "" while a word is incomplete
            answer += piece
            yield answer, streamer.stats
    thread.join()
    if errors:
        raise errors[0]
    streamer.stats.total_s = time.perf_counter() - start
    yield answer, streamer.stats


MODELS: dict[str, LoadedModel] = {}  # role -> model; module level so that ZeroGPU workers find them


def _gpu(function):
    """`@spaces.GPU` on ZeroGPU-capable installs; elsewhere the function unchanged (the decorator is a no-op)."""
    return spaces.GPU(duration=120)(function) if spaces is not None else function


@_gpu
def generate_for(role: str, prompt: str, max_new_tokens: int) -> Iterator[tuple[str, dict]]:
    """Streams the answer of the model loaded for `role` (`"student"` or `"teacher"`); yields `(text, stats dict)`."""
    for answer, stats in stream_answer(MODELS[role], prompt, max_new_tokens):
        yield answer, measurements(MODELS[role], stats)


def measurements(loaded: LoadedModel, stats: GenerationStats | None = None) -> dict:
    """The numbers shown for one model: size always, timings once it has answered."""
    stats = stats or GenerationStats()
    return {
        "model": loaded.name,
        "time_to_first_token_s": stats.time_to_first_token_s,
        "total_s": stats.total_s,
        "new_tokens": stats.num_new_tokens,
        "tokens_per_second": stats.tokens_per_second,
        "parameters": loaded.num_parameters,
        "bytes": loaded.num_bytes,
        "dtype": loaded.dtype,
        "device": str(loaded.model.device),
    }


def _human(number: float, units: tuple[str, ...], base: int) -> str:
    for unit in units[:-1]:
        if abs(number) < base:
            return f"{number:.3g} {unit}".strip()
        number /= base
    return f"{number:.3g} {units[-1]}"


def format_measurements(values: dict) -> str:
    """Markdown table of one model's measurements; timings show `…` until they exist."""

    def seconds(value):
        return "…" if value is None else f"{value:.3f} s"

    speed = values["tokens_per_second"]
    rows = [
        ("Time to first token", seconds(values["time_to_first_token_s"])),
        ("Total time", seconds(values["total_s"])),
        ("New tokens", str(values["new_tokens"])),
        ("Tokens/s", "…" if speed is None else f"{speed:.1f}"),
        ("Parameters", _human(values["parameters"], ("", "K", "M", "B"), 1000)),
        ("Size", f"{_human(values['bytes'], ('B', 'KB', 'MB', 'GB'), 1000)} ({values['dtype']}, {values['device']})"),
    ]
    return "| Measurement | Value |\n|---|---|\n" + "\n".join(f"| {name} | {value} |" for name, value in rows)


def extract_benchmark_markdown(card_text: str) -> str | None:
    """The first section of a model card whose heading names a benchmark, evaluation or results and holds a table.

    Args:
        card_text (`str`): The card (`README.md`), YAML header included or not.

    Returns:
        `str` or `None`: The section's body (heading left out), or `None` when the card has no such table.
    """
    lines = re.sub(r"\A---\n.*?\n---\n", "", card_text, flags=re.DOTALL).splitlines()
    headings = [(i, len(m.group(1))) for i, line in enumerate(lines) if (m := re.match(r"(#{1,6})\s", line))]
    for number, (start, level) in enumerate(headings):
        if not _BENCHMARK_HEADING.search(lines[start]):
            continue
        end = next((i for i, lvl in headings[number + 1 :] if lvl <= level), len(lines))
        # Relative images (the card's plot) do not exist in the Space.
        kept = [line for line in lines[start + 1 : end] if not _RELATIVE_IMAGE.match(line.strip())]
        body = "\n".join(kept).strip()
        if any(line.lstrip().startswith("|") for line in body.splitlines()):
            return body
    return None


def read_card_benchmark(model: str) -> str | None:
    """The benchmark table of a model's card: a local folder's README.md, or the Hub card (None when unreachable)."""
    readme = Path(model) / "README.md"
    if readme.is_file():
        return extract_benchmark_markdown(readme.read_text(encoding="utf-8"))
    if Path(model).exists():
        return None
    try:
        from huggingface_hub import ModelCard

        return extract_benchmark_markdown(ModelCard.load(model).content)
    except Exception:  # no network, no card, gated repo: the page says so instead
        return None


def load_models(settings: AppSettings) -> dict[str, LoadedModel]:
    """Loads the student (and teacher) into `MODELS` on the settings' device and dtype."""
    device, dtype = settings.resolved_device(), settings.resolved_dtype()
    MODELS.clear()
    MODELS["student"] = LoadedModel.load(settings.student, device=device, dtype=dtype)
    if settings.teacher:
        MODELS["teacher"] = LoadedModel.load(settings.teacher, device=device, dtype=dtype)
    if not on_zero_gpu():  # ZeroGPU attaches a GPU only inside `@spaces.GPU` calls
        for loaded in MODELS.values():
            # The first generate pays one-off set-up costs; paid here, the first visitor's timings are fair.
            for _ in stream_answer(loaded, "Hello", max_new_tokens=2):
                pass
    return MODELS


def _intro(settings: AppSettings, models: dict[str, LoadedModel]) -> str:
    names = " and ".join(f"the {role} `{loaded.name}`" for role, loaded in models.items())
    return (
        f"The same prompt goes to {names}, one after the other, with greedy decoding. "
        f"Running on `{settings.resolved_device()}` in `{str(settings.resolved_dtype()).removeprefix('torch.')}`."
    )


def build_demo(settings: AppSettings | None = None):
    """Loads the models and builds the Gradio page; returns the `gr.Blocks`, its queue set up, not launched.

    Args:
        settings (`AppSettings`, *optional*): What to load; defaults to `AppSettings.load()`.

    The event's API name is `/compare`: inputs `(prompt, max_new_tokens)`, outputs per model `(answer,
    measurements markdown)`, student first, then a dict of raw measurements by role.
    """
    try:
        import gradio as gr
    except ImportError as error:  # writing the Space needs no Gradio; running it does
        raise ImportError(
            "This Space app needs Gradio: run `pip install -r requirements.txt` in the Space folder "
            '(or, from an hf_distill clone, `pip install -e ".[demo]"`), then `python app.py` again.'
        ) from error

    settings = settings or AppSettings.load()
    models = load_models(settings)
    benchmark = settings.benchmark_markdown or read_card_benchmark(settings.student)
    with gr.Blocks(title=settings.title) as demo:
        gr.Markdown(f"# {settings.title}\n\n{_intro(settings, models)}")
        with gr.Row():
            prompt = gr.Textbox(label="Prompt", lines=3, scale=4, elem_id="prompt")
            with gr.Column(scale=1):
                max_new_tokens = gr.Slider(
                    1, MAX_NEW_TOKENS_LIMIT, value=settings.resolved_max_new_tokens(), step=1, label="Max new tokens"
                )
                button = gr.Button("Generate", variant="primary", elem_id="generate")
        outputs = []
        with gr.Row(equal_height=False):
            for role, loaded in models.items():
                with gr.Column():
                    outputs.append(
                        gr.Textbox(label=f"{role.title()}: {loaded.name}", lines=8, elem_id=f"{role}-answer")
                    )
                    outputs.append(gr.Markdown(format_measurements(measurements(loaded)), elem_id=f"{role}-stats"))
        with gr.Accordion("Benchmark (from the student's model card)", open=True):
            gr.Markdown(benchmark or "The student's model card has no benchmark table.", elem_id="benchmark")
        with gr.Accordion("Raw measurements", open=False):
            raw = gr.JSON(label="Measurements by role", elem_id="raw-measurements")

        def compare(prompt_text: str, new_tokens: float):
            if not prompt_text or not prompt_text.strip():
                raise gr.Error("Type a prompt first.")
            if not 1 <= int(new_tokens) <= MAX_NEW_TOKENS_LIMIT:
                raise gr.Error(f"Max new tokens must be between 1 and {MAX_NEW_TOKENS_LIMIT}, got {new_tokens}.")
            texts = {role: "" for role in models}
            values = {role: measurements(loaded) for role, loaded in models.items()}
            for role in models:
                for answer, answer_values in generate_for(role, prompt_text, int(new_tokens)):
                    texts[role], values[role] = answer, answer_values
                    shown = [(texts[r], format_measurements(values[r])) for r in models]
                    yield (*[item for pair in shown for item in pair], dict(values))

        # One generation at a time: concurrent requests would share the cores and distort each other's timings.
        # The button and Enter in the prompt share one concurrency group; with a limit per event, a click and a
        # submit could still run two generations at once.
        event = dict(
            fn=compare,
            inputs=[prompt, max_new_tokens],
            outputs=[*outputs, raw],
            concurrency_limit=GENERATE_CONCURRENCY_LIMIT,
            concurrency_id="generate",
        )
        button.click(api_name="compare", **event)
        prompt.submit(api_visibility="private", **event)
    # Configured here so that every launch gets it; calling `demo.queue()` again would reset `max_size`.
    return demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=GENERATE_CONCURRENCY_LIMIT)


if __name__ == "__main__":
    build_demo(AppSettings.load()).launch()
