"""Quality of every registered model and the unprocessed input on the same files, in one run.

    python benchmarks/quality.py [--data PATH] [--models wiener ...] [--update]

Scores PESQ-wb, STOI and SI-SDR per file (files in parallel processes: PESQ is slow), writes
``benchmarks/results/quality-voicebank-subset.json`` and, with ``--update``, re-renders each
model card's ``model-index`` and the README table from that same file.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "quality-voicebank-subset.json"
DATASET = {"dataset": "VoiceBank-DEMAND test subset (69 pairs, p232/p257)",
           "dataset_type": "voicebank-demand", "split": "test (69-pair subset)"}

_models: dict = {}


def _init_worker(names: list[str]) -> None:
    import torch

    import zoo

    torch.set_num_threads(1)
    for name in names:
        _models[name] = zoo.load(name)


def _score_file(pair: tuple[str, str]) -> dict:
    from zoo.audio import read_audio
    from zoo.metrics import quality_scores

    noisy, rate = read_audio(pair[0])
    clean, _ = read_audio(pair[1])
    row = {"file": Path(pair[0]).name, "noisy": quality_scores(noisy[0], clean[0], rate)}
    for name, model in _models.items():
        row[name] = quality_scores(model.enhance(noisy, rate)[0], clean[0], rate)
    return row


def run(data: Path, names: list[str], workers: int) -> dict:
    noisy_dir, clean_dir = data / "noisy_testset_wav", data / "clean_testset_wav"
    pairs = [(str(p), str(clean_dir / p.name)) for p in sorted(noisy_dir.glob("*.wav"))]
    if not pairs:
        sys.exit(f"no *.wav pairs in {noisy_dir}")
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(names,)) as pool:
        rows = list(tqdm(pool.map(_score_file, pairs), total=len(pairs), unit="file", desc="scoring"))
    systems = ["noisy", *names]
    means = {s: {k: float(np.mean([r[s][k] for r in rows])) for k in rows[0]["noisy"]} for s in systems}
    return {**DATASET, "files": len(rows), "means": means, "per_file": rows}


def card_results(report: dict, name: str) -> list[dict]:
    return [{**{k: report[k] for k in ("dataset", "dataset_type", "split")}, "system": system,
             "scores": report["means"][system]} for system in ("noisy", name)]


def markdown_table(report: dict) -> str:
    from zoo.registry import get_entry

    lines = ["| model | paper | trained on | PESQ-wb | STOI | SI-SDR (dB) |", "|---|---|---|---|---|---|"]
    for system, s in report["means"].items():
        if system == "noisy":
            paper, trained = "-", "- (unprocessed input)"
        else:
            entry = get_entry(system)
            paper, trained = entry.paper, entry.trained_on
        lines.append(f"| {system} | {paper} | {trained} | {s['pesq_wb']:.2f} | {s['stoi']:.3f} | {s['si_sdr']:.2f} |")
    return "\n".join(lines)


def update_readme(table: str, report: dict) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    block = (f"<!-- quality-table: written by benchmarks/quality.py --update -->\n"
             f"Scores on the {report['dataset']} ({report['files']} files):\n\n{table}\n<!-- /quality-table -->")
    new, count = re.subn(r"<!-- quality-table.*?<!-- /quality-table -->", block, text, flags=re.S)
    if not count:
        sys.exit("README.md has no <!-- quality-table --> block to update")
    readme.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "voicebank-demand-subset")
    parser.add_argument("--models", nargs="*", default=None, help="registered names (default: all)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--update", action="store_true", help="rewrite model cards and the README table")
    parser.add_argument("--from-results", action="store_true",
                        help=f"skip scoring: re-use {RESULTS.relative_to(ROOT)} (e.g. to re-render cards)")
    args = parser.parse_args()

    import zoo
    from zoo.cards import write_card
    from zoo.registry import get_entry

    if args.from_results:
        report = json.loads(RESULTS.read_text())
        names = [name for name in report["means"] if name != "noisy"]
    else:
        names = args.models if args.models is not None else zoo.list_models()
        report = run(args.data, names, args.workers)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    table = markdown_table(report)
    print(table)
    if args.update:
        for name in names:
            entry = get_entry(name)
            write_card(entry, entry.card_path, card_results(report, name))
        update_readme(table, report)


if __name__ == "__main__":
    main()
