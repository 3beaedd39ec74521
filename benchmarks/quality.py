"""Quality of every registered model, the unprocessed input and the DeepFilterNet3 peer, on the
same files, in one run, through the same evaluation path as ``zoo eval``.

    python benchmarks/quality.py [--models wiener ...] [--limit N] [--update] [--from-results]

Data: the 69-pair VoiceBank-DEMAND subset in ../shared/data, and a held-out mixture set built
from ../shared/data with speakers and noise types that no recipe trains or validates on.
Writes ``benchmarks/results/quality.json`` (+ per-data-set reports and tranche figures under
``benchmarks/results/<set>/``); ``--update`` re-renders every model card's ``model-index`` and
the README table from that file, so that they cannot disagree with it.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoo.cards import METRICS, card_results, write_card  # noqa: E402
from zoo.data.files import DATA_ROOT  # noqa: E402

RESULTS_DIR = ROOT / "benchmarks" / "results"
RESULTS = RESULTS_DIR / "quality.json"
PEERS = ["deepfilternet3"]
#: registered models in another mode than their card's default, scored beside them
VARIANTS = ["feature-loss-can:normalization=calibrated"]


def datasets() -> list[dict]:
    from zoo.data.heldout import build_heldout_set

    heldout = build_heldout_set(ROOT / "benchmarks" / ".cache" / "heldout-mixtures")
    return [
        {"key": "voicebank-demand-subset", "spec": f"voicebank-demand:{DATA_ROOT / 'voicebank-demand-subset'}",
         "dataset": "VoiceBank-DEMAND test subset (69 pairs, p232/p257)", "dataset_type": "voicebank-demand",
         "split": "test (69-pair subset)"},
        {"key": "heldout-mixtures", "spec": f"manifest:{heldout}",
         "dataset": "zoo held-out mixtures (LibriSpeech test-other x NOISEX m109/buccaneer1/ICRA, 0-15 dB)",
         "dataset_type": "zoo-heldout-mixtures", "split": "test"},
    ]


def run(systems: list[str], limit: int | None, workers: int | None) -> dict:
    from zoo.evaluate import write_reports, evaluate

    report = {"systems": systems, "datasets": []}
    for data in datasets():
        evaluation = evaluate(systems, data["spec"], workers=workers, limit=limit)
        paths = write_reports(evaluation, RESULTS_DIR / data["key"])
        summary = evaluation.summary()
        report["datasets"].append({**{k: data[k] for k in ("key", "dataset", "dataset_type", "split")},
                                   "files": summary["files"], "means": summary["systems"],
                                   "tranches": summary["tranches"], "notes": summary["notes"],
                                   "reports": {k: str(p.relative_to(ROOT)) for k, p in paths.items()}})
    return report


def markdown_table(report: dict, data: dict) -> str:
    from zoo.registry import get_entry, is_registered

    columns = [k for k in METRICS]
    lines = ["| system | paper | trained on | " + " | ".join(METRICS[k][1] for k in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for system, means in data["means"].items():
        name = system.split(":")[0]
        if is_registered(name):
            entry = get_entry(name)
            paper, trained = entry.paper, entry.trained_on
        elif system == "noisy":
            paper, trained = "-", "(unprocessed input)"
        else:
            paper, trained = "peer", "(its authors' training data)"
        cells = [f"{means[k]:.3f}" if k == "stoi" else f"{means[k]:.2f}" for k in columns]
        lines.append(f"| {system} | {paper} | {trained} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def update_readme(report: dict) -> None:
    readme = ROOT / "README.md"
    blocks = []
    for data in report["datasets"]:
        blocks.append(f"**{data['dataset']}** ({data['files']} files; tranche figure: "
                      f"[{data['key']}/tranches.png](benchmarks/results/{data['key']}/tranches.png))\n\n"
                      + markdown_table(report, data))
    block = ("<!-- quality-table: written by benchmarks/quality.py --update -->\n" + "\n\n".join(blocks)
             + "\n<!-- /quality-table -->")
    text, count = re.subn(r"<!-- quality-table.*?<!-- /quality-table -->", lambda _: block, readme.read_text(),
                          flags=re.S)
    if not count:
        sys.exit("README.md has no <!-- quality-table --> block to update")
    readme.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=None, help="registered names (default: all)")
    parser.add_argument("--no-peers", action="store_true", help="leave out DeepFilterNet3")
    parser.add_argument("--limit", type=int, default=None, help="first N files of each set (quick check)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--update", action="store_true", help="rewrite model cards and the README table")
    parser.add_argument("--from-results", action="store_true", help=f"re-use {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()

    import zoo

    if args.from_results:
        report = json.loads(RESULTS.read_text())
    else:
        models = args.models if args.models is not None else zoo.list_models() + VARIANTS
        report = run(["noisy", *models, *([] if args.no_peers else PEERS)], args.limit, args.workers)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for data in report["datasets"]:
        print(f"\n{data['dataset']} ({data['files']} files)\n{markdown_table(report, data)}")
    if args.update:
        if args.limit:
            sys.exit("--update needs the full sets: drop --limit")
        for name in (s for s in report["systems"] if s in zoo.list_models()):
            entry = zoo.registry.get_entry(name)
            write_card(entry, entry.card_path, card_results(report, name))
        update_readme(report)


if __name__ == "__main__":
    main()
