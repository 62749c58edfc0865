"""KD loss forward + backward at LLM vocabulary sizes: hf_distill's fused loss against the four-matmul floor and TRL.

Each implementation runs in its own process on the same seeded inputs (student and teacher hidden states and
`lm_head` weights; every position counted) and computes the loss and the student's hidden-state and `lm_head` weight
gradients:

- `floor`: the four unavoidable matmuls, nothing else: two projections, two gradient products. Timed whole and in
  token chunks of 256 and 512; the fastest counts.
- `hf_distill`: `hf_distill.losses.distillation_loss_from_hidden`.
- `trl_gkd`: TRL GKD's `generalized_jsd_loss` on full logits (`trl.experimental.gkd.GKDTrainer`).
- `trl_chunked`: TRL's `trl.trainer.distillation_trainer._chunked_divergence_loss`.

`forward_kl` is TRL's `beta=0` (its GKD loss and chunked kernel both define `beta=0` as KL(teacher || student)).
Prints seconds (median after warm-up), peak memory above the inputs (resident set size on CPU, allocated memory on
CUDA) and the loss per implementation, the ratios the targets are stated in, and writes everything as JSON.

    python benchmarks/kd_loss.py                      # Qwen-size (1,024 x 896 x 151,936) and Gemma-size cases
    python benchmarks/kd_loss.py --cases qwen --repeats 5 --output /tmp/kd_loss.json
    python benchmarks/kd_loss.py --cases smoke --output /tmp/smoke.json   # seconds: does everything run?
    python benchmarks/kd_loss.py --device cuda --dtype bfloat16 --output benchmarks/results/kd_loss_gpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict, dataclass

from bench_harness import current_rss_bytes, machine_info, peak_rss_bytes, run_worker, time_call, worker_reply

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUTPUT = os.path.join(HERE, "results", "kd_loss_cpu.json")
FLOOR_CHUNKS = (256, 512)


@dataclass(frozen=True)
class Case:
    tokens: int
    hidden: int
    vocab: int


CASES = {
    "qwen": Case(tokens=1024, hidden=896, vocab=151_936),
    "gemma": Case(tokens=512, hidden=1152, vocab=262_144),
    "smoke": Case(tokens=64, hidden=32, vocab=1000),  # a seconds-long check that every implementation runs
}
DEFAULT_CASES = ("qwen", "gemma")
DIVERGENCES = {"jsd": 0.5, "forward_kl": 0.0}  # name -> TRL beta
IMPLEMENTATIONS = ("floor", "hf_distill", "trl_gkd", "trl_chunked")
TARGETS = {"time_vs_floor": 1.5, "time_vs_trl_chunked": 0.5, "memory_vs_trl_gkd": 0.3, "loss_rel_diff": 1e-3,
           "gemma_memory_gb": 8.0}


# -- worker: one implementation, one process --------------------------------------------------------------------------


def _inputs(case: Case, seed: int, dtype, device):
    """Seeded inputs, built in place (no transient copies that would inflate the memory baseline). Logits have a
    standard deviation of about 2; the teacher is a noisy copy of the student so the divergence is realistic."""
    import torch

    g = torch.Generator().manual_seed(seed)
    std = 2.0 / math.sqrt(case.hidden)
    student_weight = torch.randn(case.vocab, case.hidden, generator=g).mul_(std)
    teacher_weight = torch.randn(case.vocab, case.hidden, generator=g).mul_(0.5 * std).add_(student_weight)
    student_hidden = torch.randn(case.tokens, case.hidden, generator=g)
    teacher_hidden = torch.randn(case.tokens, case.hidden, generator=g).mul_(0.5).add_(student_hidden)
    tensors = [t.to(device=device, dtype=dtype)
               for t in (student_hidden, teacher_hidden, student_weight, teacher_weight)]
    tensors[0].requires_grad_(True)
    tensors[2].requires_grad_(True)
    return tensors


class _Floor:
    """The four matmuls a fused loss cannot avoid, in token chunks (`None`: all tokens at once), nothing else; the
    "logit gradient" is the projection itself. Outputs go to buffers reused across calls, as the fused loss reuses
    its own, so the floor pays no allocation or page-fault cost."""

    def __init__(self, inputs, chunk: int | None):
        self.inputs, self.chunk, self.buffers = inputs, chunk, None

    def __call__(self):
        import torch

        hs, ht, ws, wt = self.inputs
        rows = self.chunk or hs.shape[0]
        if self.buffers is None:  # in the inputs' dtype: `out=` must match it (bf16 matmuls accumulate in fp32)
            like = dict(dtype=hs.dtype, device=hs.device)
            self.buffers = [torch.empty(rows, ws.shape[0], **like) for _ in range(2)]
            self.buffers += [torch.empty(hs.shape, **like), torch.empty(ws.shape, **like)]
        student_logits, teacher_logits, grad_hidden, grad_weight = self.buffers
        with torch.no_grad():
            for start in range(0, hs.shape[0], rows):
                chunk = slice(start, start + rows)
                n = hs[chunk].shape[0]
                torch.mm(hs[chunk], ws.t(), out=student_logits[:n])
                torch.mm(ht[chunk], wt.t(), out=teacher_logits[:n])
                torch.mm(student_logits[:n], ws, out=grad_hidden[chunk])
                torch.addmm(grad_weight, student_logits[:n].t(), hs[chunk], beta=float(start > 0), out=grad_weight)


def _loss_fn(impl: str, divergence: str, beta: float):
    if impl == "hf_distill":
        from hf_distill.losses import distillation_loss_from_hidden

        return lambda hs, ht, ws, wt: distillation_loss_from_hidden(hs, ht, ws, wt, divergence=divergence, beta=beta)
    if impl == "trl_gkd":
        import torch
        from trl.experimental.gkd import GKDTrainer

        def gkd(hs, ht, ws, wt):
            with torch.no_grad():
                teacher_logits = ht @ wt.t()
            # 2-D logits: "batchmean" divides by the number of positions
            return GKDTrainer.generalized_jsd_loss(hs @ ws.t(), teacher_logits, beta=beta)

        return gkd
    if impl == "trl_chunked":
        import torch
        from trl.trainer.distillation_trainer import _chunked_divergence_loss

        def chunked(hs, ht, ws, wt):
            mask = torch.ones(1, hs.shape[0], device=hs.device)
            return _chunked_divergence_loss(hs[None], ht[None], ws, wt, mask, beta)[0]

        return chunked
    raise ValueError(f"Unknown implementation {impl!r}; choose one of {IMPLEMENTATIONS}.")


def _step(impl, divergence, beta, inputs):
    if impl == "floor":
        return None
    loss_fn = _loss_fn(impl, divergence, beta)

    def step():
        for tensor in inputs:
            tensor.grad = None
        loss = loss_fn(*inputs)
        loss.backward()
        return loss.item()

    return step


def worker(args) -> None:
    import torch

    case = CASES[args.case]
    device = torch.device(args.device)
    inputs = _inputs(case, args.seed, getattr(torch, args.dtype), device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    # import the implementation before the memory baseline: library imports are not the loss's memory
    step = None if args.impl == "floor" else _step(args.impl, args.divergence, DIVERGENCES[args.divergence], inputs)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    baseline = torch.cuda.memory_allocated() if device.type == "cuda" else current_rss_bytes()
    baseline_peak = peak_rss_bytes()
    result = {"implementation": args.impl, "case": args.case, "divergence": args.divergence}
    if args.impl == "floor":
        timings = {}
        for chunk in (None, *FLOOR_CHUNKS):
            timings["whole" if chunk is None else f"chunks_of_{chunk}"] = time_call(
                _Floor(inputs, chunk), repeats=args.repeats, warmup=args.warmup, sync=sync
            )
        fastest = min(timings, key=lambda name: timings[name].median)
        result.update(timings[fastest].as_dict(), fastest=fastest, loss=None,
                      variants={name: timing.as_dict() for name, timing in timings.items()})
    else:
        timing = time_call(step, repeats=args.repeats, warmup=args.warmup, sync=sync)
        result.update(timing.as_dict(), loss=timing.result)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else peak_rss_bytes()
    result.update(peak_bytes=peak - baseline, baseline_bytes=baseline, baseline_peak_bytes=baseline_peak)
    worker_reply(result)


# -- driver -----------------------------------------------------------------------------------------------------------


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def _summarise(case_name: str, divergence: str, results: dict) -> dict:
    ours, floor = results.get("hf_distill", {}), results.get("floor", {})
    gkd, chunked = results.get("trl_gkd", {}), results.get("trl_chunked", {})
    loss_reference = chunked.get("loss", gkd.get("loss"))
    summary = {
        "time_vs_floor": _ratio(ours.get("seconds"), floor.get("seconds")),
        "time_vs_trl_chunked": _ratio(ours.get("seconds"), chunked.get("seconds")),
        "memory_vs_trl_gkd": _ratio(ours.get("peak_bytes"), gkd.get("peak_bytes")),
        "loss_rel_diff_vs_trl": (
            None if ours.get("loss") is None or loss_reference is None
            else abs(ours["loss"] - loss_reference) / abs(loss_reference)
        ),
        # informative: process CPU seconds are steadier than wall-clock on a shared machine
        "cpu_time_vs_floor": _ratio(ours.get("cpu_seconds"), floor.get("cpu_seconds")),
        "cpu_time_vs_trl_chunked": _ratio(ours.get("cpu_seconds"), chunked.get("cpu_seconds")),
        "time_trl_gkd_vs_floor": _ratio(gkd.get("seconds"), floor.get("seconds")),
        "time_trl_chunked_vs_floor": _ratio(chunked.get("seconds"), floor.get("seconds")),
    }
    met = {
        "time_vs_floor": _at_most(summary["time_vs_floor"], TARGETS["time_vs_floor"]),
        "time_vs_trl_chunked": _at_most(summary["time_vs_trl_chunked"], TARGETS["time_vs_trl_chunked"]),
        "memory_vs_trl_gkd": _at_most(summary["memory_vs_trl_gkd"], TARGETS["memory_vs_trl_gkd"]),
        "loss_rel_diff_vs_trl": _at_most(summary["loss_rel_diff_vs_trl"], TARGETS["loss_rel_diff"]),
    }
    if case_name == "gemma" and "peak_bytes" in ours:
        total = ours["peak_bytes"] + ours["baseline_bytes"]
        summary["gemma_total_gb"] = total / 1e9
        met["gemma_within_8gb"] = total / 1e9 <= TARGETS["gemma_memory_gb"]
    return {"ratios": summary, "targets_met": met}


def _at_most(value, limit):
    return None if value is None else value <= limit


def _print_case(case_name: str, divergence: str, results: dict, summary: dict) -> None:
    print(f"\n== {case_name} {asdict(CASES[case_name])}  divergence={divergence} ==")
    print(f"{'implementation':<14}{'seconds':>10}{'cpu s':>10}{'peak GB':>10}{'loss':>16}")
    for impl, r in results.items():
        if "error" in r:
            print(f"{impl:<14}  failed: {r['error'][:200]}")
            continue
        loss = "-" if r.get("loss") is None else f"{r['loss']:.8f}"
        print(f"{impl:<14}{r['seconds']:>10.3f}{r['cpu_seconds']:>10.3f}{r['peak_bytes'] / 1e9:>10.3f}{loss:>16}")
    for key, value in summary["ratios"].items():
        shown = "n/a" if value is None else f"{value:.4g}"
        met = summary["targets_met"].get(key)
        print(f"  {key:<26}{shown:>12}" + ("" if met is None else f"   target met: {met}"))
    if "gemma_within_8gb" in summary["targets_met"]:
        print(f"  {'gemma_within_8gb':<26}{summary['targets_met']['gemma_within_8gb']!s:>12}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(DEFAULT_CASES))
    parser.add_argument("--divergences", nargs="+", choices=list(DIVERGENCES), default=list(DIVERGENCES))
    parser.add_argument("--implementations", nargs="+", choices=IMPLEMENTATIONS, default=list(IMPLEMENTATIONS))
    parser.add_argument("--skip", nargs="*", default=[], metavar="CASE:IMPL",
                        help="Implementations not to run for a case, e.g. gemma:trl_gkd when it cannot fit.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed repeats after warm-up (median reported).")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="Where to write the JSON results.")
    parser.add_argument("--timeout", type=float, default=3600, help="Seconds allowed to one implementation's process.")
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "CASE", "DIVERGENCE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.impl, args.case, args.divergence = args.worker
        worker(args)
        return 0

    report = {"machine": machine_info(), "settings": {k: v for k, v in vars(args).items() if k != "worker"},
              "targets": TARGETS, "runs": []}
    common = ["--repeats", str(args.repeats), "--warmup", str(args.warmup), "--seed", str(args.seed),
              "--device", args.device, "--dtype", args.dtype]
    for case_name in args.cases:
        floor = None
        for divergence in args.divergences:
            results = {}
            for impl in args.implementations:
                if f"{case_name}:{impl}" in args.skip:
                    results[impl] = {"error": "skipped (--skip)"}
                    continue
                if impl == "floor" and floor is not None:  # the floor does not depend on the divergence
                    results[impl] = floor
                    continue
                print(f"running {impl} on {case_name} / {divergence} ...", file=sys.stderr, flush=True)
                results[impl] = run_worker(__file__, ["--worker", impl, case_name, divergence, *common],
                                           timeout=args.timeout)
                if impl == "floor" and "error" not in results[impl]:
                    floor = results[impl]
            summary = _summarise(case_name, divergence, results)
            _print_case(case_name, divergence, results, summary)
            report["runs"].append({"case": case_name, **asdict(CASES[case_name]), "divergence": divergence,
                                   "trl_beta": DIVERGENCES[divergence], "results": results, **summary})
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
