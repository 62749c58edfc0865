"""How long `import hf_distill` and `hf-distill --help` take, beside `import trl` and `trl --help`.

Each command runs in a fresh process, `--repeats` times after one warm-up (so the OS file cache is warm for all), and
under `python -X importtime` once more to read the cumulative import time of the package itself. Prints a table and
writes `benchmarks/results/import_time.json`.

    PYTHONPATH=$PWD python benchmarks/import_time.py --repeats 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_harness import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "import_time.json"
TARGET_SECONDS = 0.5
# name -> (python arguments, the module whose cumulative -X importtime is reported)
COMMANDS = {
    "python -c pass": (["-c", "pass"], None),  # interpreter start alone: the floor under every wall time
    "import hf_distill": (["-c", "import hf_distill"], "hf_distill"),
    "hf-distill --help": (["-c", "import sys; from hf_distill.cli import main; sys.argv[0] = 'hf-distill'; "
                                 "sys.exit(main(['--help']))"], "hf_distill.cli"),
    "import trl": (["-c", "import trl"], "trl"),
    "trl --help": (["-c", "import sys; from trl.cli.main import main; sys.argv = ['trl', '--help']; main()"],
                   "trl.cli.main"),
}


def wall_seconds(args: list[str], repeats: int) -> list[float]:
    """Wall-clock seconds of the whole process (interpreter start included), once per repeat after a warm-up."""
    subprocess.run([sys.executable, *args], capture_output=True, check=False)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False)
        seconds.append(time.perf_counter() - start)
        if done.returncode not in (0,):
            raise RuntimeError(f"{args} failed: {done.stderr[-2000:]}")
    return seconds


def importtime_seconds(args: list[str], module: str | None) -> tuple[float, str]:
    """Cumulative `-X importtime` seconds of `module`, and what the command printed to stderr besides the timings."""
    done = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True, check=False)
    cumulative, other = None, []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:"):
            other.append(line)
            continue
        fields = [field.strip() for field in line.removeprefix("import time:").split("|")]
        if fields[2] == module:
            cumulative = int(fields[1]) / 1e6
    if module is None:
        cumulative = 0.0
    elif cumulative is None:
        raise RuntimeError(f"{module} does not appear in the -X importtime output of {args}")
    return cumulative, "\n".join(other)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    options = parser.parse_args()
    rows = {}
    for name, (args, module) in COMMANDS.items():
        seconds = wall_seconds(args, options.repeats)
        imported, printed = importtime_seconds(args, module)
        rows[name] = {"wall_seconds_median": statistics.median(seconds), "wall_seconds": seconds,
                      "importtime_cumulative_seconds": imported, "stderr_lines_besides_importtime": printed}
    floor = rows["python -c pass"]["wall_seconds_median"]
    print(f"{'command':<20} {'wall median (s)':>16} {'minus start (s)':>16} {'-X importtime (s)':>18}   target")
    for name, row in rows.items():
        row["wall_seconds_minus_interpreter_start"] = row["wall_seconds_median"] - floor
        target = f"<= {TARGET_SECONDS}" if "hf" in name else ""
        print(f"{name:<20} {row['wall_seconds_median']:>16.3f} {row['wall_seconds_minus_interpreter_start']:>16.3f} "
              f"{row['importtime_cumulative_seconds']:>18.3f}   {target}")
        if row["stderr_lines_besides_importtime"]:
            print(f"  printed: {row['stderr_lines_besides_importtime'][:200]!r}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"target_seconds": TARGET_SECONDS, "repeats": options.repeats, "results": rows,
                                   "machine": machine_info()}, indent=2) + "\n")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
