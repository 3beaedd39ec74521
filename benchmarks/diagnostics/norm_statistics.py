"""Does it matter which statistics the CAN's batch normalisation uses at inference?

    python benchmarks/diagnostics/norm_statistics.py --data folders:NOISY_DIR:CLEAN_DIR [--models feature-loss-can ...]
        [--count 20]

The zoo folds each adaptive normalisation ``alpha*x + beta*BN(x)`` into its convolution with the
running statistics gathered in training (``AdaptiveNorm.folded``). The authors' TensorFlow code
does not: ``slim.batch_norm`` defaults to ``is_training=True`` and their inference script never
changes it (nor restores the moving averages, which are not trainable variables), so at test
time every layer is normalised with the statistics of the file being enhanced. With learnt
``beta`` of 0.2-0.6 per layer that path is not negligible, so this measures both on the same
files: the largest sample difference and the mean scores of each. Per-file statistics cannot
stream (each layer needs the whole file's activations), which is why the zoo folds.

Writes ``benchmarks/diagnostics/results/norm_statistics.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import zoo  # noqa: E402
from zoo.audio import read_audio  # noqa: E402
from zoo.data.pairs import paired_files  # noqa: E402
from zoo.metrics.scoring import score_file_pair  # noqa: E402

RESULTS = ROOT / "benchmarks" / "diagnostics" / "results" / "norm_statistics.json"
REPORTED = ("pesq_wb", "si_sdr", "csig", "cbak", "covl")


def measure(name: str, pairs) -> dict:
    model = zoo.load(name)
    network = model.network.eval()
    scores = {"running": [], "per_file": []}
    max_diff = 0.0
    for pair in pairs:
        noisy, rate = read_audio(pair.noisy)
        clean, _ = read_audio(pair.clean)
        if rate != model.sample_rate:
            raise SystemExit(f"{pair.noisy}: {rate} Hz; this check feeds the network directly and needs "
                             f"{model.sample_rate} Hz files")
        wave = noisy.reshape(1, -1)
        with torch.no_grad():
            running = network(wave)
            per_file = network.forward_with_input_statistics(wave)
        max_diff = max(max_diff, float((running - per_file).abs().max()))
        for key, out in (("running", running), ("per_file", per_file)):
            scores[key].append(score_file_pair(out.reshape(-1).numpy(), clean.reshape(-1).numpy(), rate))
    summary = {key: {m: round(float(np.mean([s[m] for s in rows])), 3) for m in REPORTED}
               for key, rows in scores.items()}
    return {"files": len(pairs), "max_abs_sample_difference": max_diff, **summary}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a data spec as zoo eval takes it")
    parser.add_argument("--models", nargs="+", default=["feature-loss-can", "can-l1", "can-l2"])
    parser.add_argument("--count", type=int, default=20, help="first N pairs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pairs = paired_files(args.data)[: args.count]
    result = {"data": args.data, "models": {}}
    for name in args.models:
        result["models"][name] = measure(name, pairs)
        print(name, json.dumps(result["models"][name]), flush=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
