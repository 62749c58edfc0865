"""Load: the generated Space under 50 concurrent `gradio_client` visitors answers every request correctly.

The measuring code lives in `benchmarks/space_load.py` (which also writes `benchmarks/results/space_load_cpu.json`);
this test runs it on the test models and asserts on what it measured.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

from hf_distill.publish.space import create_space
from tests.space_helpers import import_app, save_models

pytest.importorskip("gradio_client")

_BENCH = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "space_load.py")
NUM_VISITORS = 50


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("space_load_benchmark", _BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while they are built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def space_folder(tmp_path_factory, model_factory, bench):
    root = tmp_path_factory.mktemp("space_load")
    student, teacher = save_models(root, model_factory)
    return create_space(
        student, teacher=teacher, output_dir=root / "space", max_new_tokens=bench.MAX_NEW_TOKENS
    ).folder


@pytest.mark.slow
def test_fifty_concurrent_visitors_all_answered_like_direct_generation(bench, space_folder):
    report = bench.run_space_load(space_folder, num_requests=NUM_VISITORS)
    print(report.summary())
    assert report.num_errors == 0, report.errors
    assert len(report.outcomes) == NUM_VISITORS and report.roles == ["student", "teacher"]
    assert len({outcome.prompt for outcome in report.outcomes}) == NUM_VISITORS
    for outcome in report.outcomes:
        assert set(outcome.answers) == {"student", "teacher"}
        assert all(text.strip() for text in outcome.answers.values())
    assert report.num_wrong_answers == 0  # each answer equals greedy `generate` for its own prompt
    # The app's promise holds under load: one generation at a time, every other request waits in the queue.
    assert report.concurrency_limit == 1 and report.max_simultaneous_generations == 1
    assert report.queue_max_size >= NUM_VISITORS
    assert 0 < report.latency_median_s <= report.latency_p95_s <= report.latency_max_s <= report.total_s
    assert 0 < report.generation_median_s < report.latency_max_s  # the last in line waited for the others


def test_queue_is_set_up_by_build_demo_and_kept_on_zero_gpu(space_folder, monkeypatch):
    """Gradio's `demo.queue()` defaults `max_size` to 1 on ZeroGPU Spaces (a burst would mostly get "queue is full");
    the app sets its own, and one concurrency group covers both the button and Enter in the prompt."""
    import gradio as gr

    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert gr.Blocks().queue()._queue.max_size == 1  # what a plain `demo.queue()` would give here
    app = import_app(space_folder, name="zero_gpu_queue_app")
    demo = app.build_demo(app.AppSettings.load(space_folder, environ={}))
    assert demo._queue.max_size == app.QUEUE_MAX_SIZE >= NUM_VISITORS
    events = [fn for fn in demo.fns.values() if fn.name == "compare"]
    assert len(events) == 2  # the button's click and the prompt's submit
    assert {(fn.concurrency_id, fn.concurrency_limit) for fn in events} == {("generate", 1)}
