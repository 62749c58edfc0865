"""Load on the generated Space demo: `--num-requests` visitors (50 by default) send distinct prompts to its `/compare`
API at the same moment through `gradio_client`, each from its own `Client` (its own session, as that many browsers
would have), and every answer is checked.

The Space is the folder `create_space` writes for the test models of `tests/tiny.py` (student: Llama, hidden 32,
2 layers; teacher: hidden 64, 2 layers), served in this process by its own `build_demo` with the queue it sets up.
The app generates one request at a time (its `concurrency_limit` is 1, so that the timings it shows are not
inflated by a neighbour), so the latencies below are mostly time spent waiting in the queue. The clients run in
the server's process, so their own work (50 threads, one event stream each) shares its cores and its GIL:

- latency: wall-clock seconds from a client's submit to its final output, per request; median, p95 and max;
- total: seconds from the first submit to the last answer, and requests answered per second over it;
- generation: seconds the app itself reports generating per request (student and teacher summed), median;
- answers: the student's and the teacher's answer to each prompt against greedy `generate` with the same model
  done directly with transformers (same chat template, same `max_new_tokens`);
- errors: requests that raised (queue full, app error, lost connection) and their messages;
- max simultaneous generations: the most `generate_for` calls running at once inside the app (should be 1).

    python benchmarks/space_load.py                    # writes benchmarks/results/space_load_cpu.json
    python benchmarks/space_load.py --num-requests 10 --output /tmp/space_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [HERE, ROOT]
from bench_harness import machine_info  # noqa: E402

from tests.space_helpers import import_app, serve_app  # noqa: E402

DEFAULT_OUTPUT = os.path.join(HERE, "results", "space_load_cpu.json")
NUM_REQUESTS = 50
MAX_NEW_TOKENS = 8
API_NAME = "/compare"
_MAX_ERRORS_KEPT = 5


def visitor_prompts(num_prompts: int) -> list[str]:
    """`num_prompts` distinct prompts in the words of the test corpus (sums of two numbers, in turn)."""
    return [f"what is {i // 10} add {i % 10} and {i}" for i in range(num_prompts)]


def reference_answers(folder: str, prompts: list[str], *, max_new_tokens: int) -> list[str]:
    """Greedy answers of the model in `folder`, one prompt at a time, through transformers alone."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    answers = []
    for prompt in prompts:
        if tokenizer.chat_template:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
        else:
            ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_token_id)
        answers.append(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    return answers


@dataclass
class RequestOutcome:
    """One visitor's request: its prompt, wall-clock seconds, answers by role (`None` on error), error text, and the
    seconds the app itself spent generating (its own `total_s` of every model, summed)."""

    prompt: str
    seconds: float
    answers: dict[str, str] | None = None
    error: str | None = None
    generation_s: float | None = None


def fire_requests(url: str, prompts: list[str], *, max_new_tokens: int) -> tuple[list[RequestOutcome], float]:
    """Sends every prompt at once, one thread and one `gradio_client.Client` per prompt; returns the outcomes in
    prompt order and the seconds from the common start to the last answer."""
    from gradio_client import Client

    clients = [Client(url, verbose=False) for _ in prompts]  # connected before the clock starts
    outcomes: list[RequestOutcome | None] = [None] * len(prompts)
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * len(prompts)
    start_together = threading.Barrier(len(prompts))

    def visit(index: int) -> None:
        start_together.wait()
        start = time.perf_counter()
        try:
            outputs = clients[index].predict(prompts[index], max_new_tokens, api_name=API_NAME)
            # Outputs: (answer, stats markdown) per role, then the raw measurements by role.
            answers, error = dict(zip(outputs[-1], outputs[0:-1:2], strict=True)), None
            generation = sum(values["total_s"] for values in outputs[-1].values())
        except Exception as raised:  # counted and reported: the point is to see whether any request fails
            answers, error, generation = None, repr(raised), None
        spans[index] = (start, time.perf_counter())
        outcomes[index] = RequestOutcome(prompts[index], spans[index][1] - start, answers, error, generation)

    threads = [threading.Thread(target=visit, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()
    total = max(end for _, end in spans) - min(start for start, _ in spans)
    return outcomes, total


@contextmanager
def counting_generations(app) -> Iterator[list[int]]:
    """Wraps the app's `generate_for` to record the most generations running at once; yields `[max so far]`."""
    original, lock, running, most = app.generate_for, threading.Lock(), [0], [0]

    def counted(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            yield from original(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    app.generate_for = counted
    try:
        yield most
    finally:
        app.generate_for = original


@dataclass
class SpaceLoadReport:
    """Figures of one load run; `outcomes` holds every request (left out of `summary()`)."""

    num_requests: int
    num_errors: int
    num_wrong_answers: int
    latency_median_s: float
    latency_p95_s: float
    latency_max_s: float
    total_s: float
    requests_per_s: float
    generation_median_s: float
    concurrency_limit: int | None
    queue_max_size: int | None
    max_simultaneous_generations: int
    max_new_tokens: int
    roles: list[str]
    errors: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    outcomes: list[RequestOutcome] = field(default_factory=list, repr=False)

    def summary(self) -> dict:
        return {key: value for key, value in asdict(self).items() if key != "outcomes"}


def _queue_settings(demo) -> tuple[int | None, int | None]:
    """The `/compare` event's concurrency limit and the queue's `max_size`, read from the running demo."""
    compare = next(fn for fn in demo.fns.values() if fn.api_name == API_NAME.lstrip("/"))
    return compare.concurrency_limit, demo._queue.max_size


def run_space_load(folder: str | Path, *, num_requests: int = NUM_REQUESTS, max_new_tokens: int = MAX_NEW_TOKENS):
    """Serves the Space in `folder`, fires `num_requests` concurrent requests, checks every answer against direct
    greedy generation; returns a [`SpaceLoadReport`]."""
    app = import_app(Path(folder), name="space_load_app")
    settings = app.AppSettings.load(folder, environ={})
    prompts = visitor_prompts(num_requests)
    with serve_app(app, settings) as (demo, url), counting_generations(app) as most:
        concurrency_limit, queue_max_size = _queue_settings(demo)
        outcomes, total = fire_requests(url, prompts, max_new_tokens=max_new_tokens)
    roles = {"student": settings.student, "teacher": settings.teacher}
    expected = {
        role: reference_answers(name, prompts, max_new_tokens=max_new_tokens) for role, name in roles.items() if name
    }
    wrong = [
        outcome
        for i, outcome in enumerate(outcomes)
        if outcome.answers is not None and outcome.answers != {role: answers[i] for role, answers in expected.items()}
    ]
    seconds = sorted(outcome.seconds for outcome in outcomes)
    errors = [outcome.error for outcome in outcomes if outcome.error]
    return SpaceLoadReport(
        num_requests=num_requests,
        num_errors=len(errors),
        num_wrong_answers=len(wrong),
        latency_median_s=statistics.median(seconds),
        latency_p95_s=statistics.quantiles(seconds, n=20, method="inclusive")[-1] if len(seconds) > 1 else seconds[0],
        latency_max_s=seconds[-1],
        total_s=total,
        requests_per_s=num_requests / total,
        generation_median_s=statistics.median(o.generation_s for o in outcomes if o.generation_s is not None),
        concurrency_limit=concurrency_limit,
        queue_max_size=queue_max_size,
        max_simultaneous_generations=most[0],
        max_new_tokens=max_new_tokens,
        roles=sorted(expected),
        errors=errors[:_MAX_ERRORS_KEPT],
        latencies_s=[round(second, 3) for second in seconds],
        outcomes=outcomes,
    )


def build_space(root: Path, *, max_new_tokens: int = MAX_NEW_TOKENS) -> Path:
    """The Space folder for the test models of `tests/tiny.py`, written under `root`."""
    from hf_distill.hub import create_space
    from tests import tiny
    from tests.space_helpers import save_models

    student, teacher = save_models(root, tiny.ModelFactory(tiny.build_tokenizer()))
    return create_space(student, teacher=teacher, output_dir=root / "space", max_new_tokens=max_new_tokens).folder


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-requests", type=int, default=NUM_REQUESTS)
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS)
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as root:
        folder = build_space(Path(root), max_new_tokens=args.max_new_tokens)
        report = run_space_load(folder, num_requests=args.num_requests, max_new_tokens=args.max_new_tokens)
    result = {"machine": machine_info(), **report.summary()}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report.summary(), indent=2))
    return result


if __name__ == "__main__":
    main()
