"""Start-up cost of the light ``zoo`` commands: wall time and peak memory in fresh processes.

    python benchmarks/startup.py [--repeats 5] [--tree PATH] [--out benchmarks/results/startup.json]

Each command (``zoo list``, ``zoo --help``, ``zoo info wiener``) and two references (``python -c
pass``, ``python -c "import torch"``) run ``--repeats`` times, interleaved, each in a fresh
interpreter started exactly as the ``zoo`` console script starts (``from zoo.cli import main``).
Wall time is measured around the whole process; peak memory is the child's ``ru_maxrss`` from
``wait4``, taken by a small launcher (``python -S``, a few MB) so that the figure is not the
benchmark's own RSS carried across fork (ru_maxrss keeps the parent's peak across fork + exec).
The references are measured the same way, so the ratios are what to compare across machines:
the target is ``zoo list`` under 2 s, far below ``import torch``.

``zoo info`` runs with ``HF_HUB_OFFLINE=1``: what is measured is start-up, not the network
(``ZOO_HUB_TIMEOUT`` bounds that, default 10 s). ``--tree`` measures another checkout (e.g. a
``git archive`` of an older commit) through ``PYTHONPATH``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 2.0

ZOO_MAIN = "import sys; from zoo.cli import main; sys.exit(main())"
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "python -c 'import torch'": ["-c", "import torch"],
    "zoo list": ["-c", ZOO_MAIN, "list"],
    "zoo --help": ["-c", ZOO_MAIN, "--help"],
    "zoo info wiener": ["-c", ZOO_MAIN, "info", "wiener"],
    "import zoo; zoo.list_models()": ["-c", "import zoo; zoo.list_models()"],  # the API's start (target 1.5 s)
}
REFERENCES = ("python -c pass", "python -c 'import torch'")

# Runs one command, waits for it with wait4 and prints its exit status and ru_maxrss (KiB on Linux).
LAUNCHER = ("import os, sys\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    fd = os.open(os.devnull, os.O_WRONLY); os.dup2(fd, 1); os.dup2(fd, 2)\n"
            "    os.execv(sys.argv[1], sys.argv[1:])\n"
            "_, status, usage = os.wait4(pid, 0)\n"
            "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)\n")


def measure(python: str, args: list[str], env: dict, cwd: str) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one fresh process running ``python *args`` in ``cwd``
    (an empty folder: ``python -c`` puts the working directory first on sys.path)."""
    start = time.perf_counter()
    done = subprocess.run([python, "-S", "-c", LAUNCHER, python, *args], env=env, capture_output=True, text=True,
                          timeout=600, check=True, cwd=cwd)
    wall = time.perf_counter() - start
    code, maxrss_kib = (int(x) for x in done.stdout.split())
    if code != 0:
        raise RuntimeError(f"{args} exited with {code}")
    return wall, maxrss_kib / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tree", type=Path, default=PROJECT, help="the checkout whose zoo is measured")
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results" / "startup.json")
    args = parser.parse_args(argv)

    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_HUB")}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(args.tree.resolve()))
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="zoo-startup-") as cwd:
        for name, command in COMMANDS.items():  # warm the page cache and .pyc files; not counted
            measure(python, command, env, cwd)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
        for _ in range(args.repeats):  # interleaved, so that a load spike hits every command alike
            for name, command in COMMANDS.items():
                samples[name].append(measure(python, command, env, cwd))

    results = {}
    for name, runs in samples.items():
        walls, peaks = [w for w, _ in runs], [m for _, m in runs]
        results[name] = {"wall_s_median": round(statistics.median(walls), 3), "wall_s_min": round(min(walls), 3),
                         "wall_s_all": [round(w, 3) for w in walls], "peak_rss_mb_median": round(statistics.median(peaks), 1)}
    base, torch = (results[name] for name in REFERENCES)
    for name, row in results.items():
        row["wall_vs_python"] = round(row["wall_s_median"] / base["wall_s_median"], 2)
        row["wall_vs_import_torch"] = round(row["wall_s_median"] / torch["wall_s_median"], 3)
        row["rss_vs_python"] = round(row["peak_rss_mb_median"] / base["peak_rss_mb_median"], 2)
        row["rss_vs_import_torch"] = round(row["peak_rss_mb_median"] / torch["peak_rss_mb_median"], 3)
        if name.startswith("zoo"):
            row["under_target"] = row["wall_s_median"] < TARGET_SECONDS
    report = {
        "what": "start-up of light zoo commands in fresh processes: median wall time and peak RSS (ru_maxrss via "
                "wait4 from a python -S launcher), and ratios against python -c pass and import torch",
        "target": f"zoo list under {TARGET_SECONDS:g} s",
        "tree": str(args.tree.resolve()),
        "repeats": args.repeats,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average_1min": round(os.getloadavg()[0], 2), "platform": platform.platform()},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_name(f".{args.out.name}.partial")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(temporary, args.out)

    print(f"| command | wall (s, median of {args.repeats}) | x python | x import torch | peak RSS (MB) | x import torch |")
    print("|---|---|---|---|---|---|")
    for name, row in results.items():
        print(f"| {name} | {row['wall_s_median']:.2f} | {row['wall_vs_python']:.1f} | {row['wall_vs_import_torch']:.2f} "
              f"| {row['peak_rss_mb_median']:.0f} | {row['rss_vs_import_torch']:.2f} |")
    print(f"wrote {args.out}")
    slow = [name for name, row in results.items() if row.get("under_target") is False]
    if "zoo list" in slow:
        print(f"zoo list is not under {TARGET_SECONDS:g} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
