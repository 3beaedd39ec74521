"""How the two deep-feature-loss networks see real speech: the zoo's own ``feature-loss-net``
(pretrained on this project's CPU on noise-type and speech/noise tags of ../shared/data) against
the authors' ``feature-loss-net-germain2019`` (DCASE 2016 scenes + CHiME-Home tags, the network
their released denoiser was trained with).

    python benchmarks/diagnostics/loss_networks.py [--pairs 69] [--update]

On every VoiceBank-DEMAND subset pair it computes the deep feature loss's layer distances
(Eq. 1: the L1 distance between the first M=6 layers' activations of the clean reference and
of a signal) for three signals: the noisy input, the Wiener filter's output and the released
CAN's output, each network as the feature-loss recipes run it (the zoo's with its running
statistics, the authors' with batch statistics). It reports, per network:

- each layer's mean distance for the noisy input, and each layer's share of the summed loss
  with the sec. II-B b) weighting (each layer scaled by the inverse of its mean on noisy input);
- per layer, the ratio enhanced/noisy: how much of each layer's distance the enhancement removes;
- Spearman's rank correlation, over all (file, signal) rows, between the weighted loss and
  PESQ-wb and SI-SDR (a loss that tracks quality ranks signals as the measures do: a strongly
  negative correlation), and the share of files whose loss ranks the three signals as PESQ-wb does.

Writes ``benchmarks/diagnostics/results/loss_networks.json`` and ``loss_networks.png`` with ``--update``.
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

RESULTS = ROOT / "benchmarks" / "diagnostics" / "results" / "loss_networks.json"
FIGURE = ROOT / "benchmarks" / "diagnostics" / "results" / "loss_networks.png"
NETWORKS = {"feature-loss-net": "zoo (../shared/data tags, running statistics)",
            "feature-loss-net-germain2019": "authors (DCASE 2016 + CHiME-Home, batch statistics)"}
SIGNALS = ("noisy", "wiener", "feature-loss-can")
LAYERS = 6


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def measure(n_pairs: int) -> dict:
    import zoo
    from zoo.audio import read_audio
    from zoo.data.files import DATA_ROOT
    from zoo.data.pairs import paired_files
    from zoo.metrics import pesq_score, si_sdr
    from zoo.models.feature_loss import load_feature_loss_net

    pairs = paired_files(f"voicebank-demand:{DATA_ROOT / 'voicebank-demand-subset'}")[:n_pairs]
    nets = {name: load_feature_loss_net(name) for name in NETWORKS}
    systems = {name: zoo.load(name) for name in SIGNALS if name != "noisy"}
    distances = {name: {s: [] for s in SIGNALS} for name in NETWORKS}
    quality = {s: {"pesq_wb": [], "si_sdr": []} for s in SIGNALS}
    for pair in pairs:
        noisy, rate = read_audio(pair.noisy)
        clean, _ = read_audio(pair.clean)
        noisy, clean = noisy.reshape(1, -1), clean.reshape(1, -1)
        signals = {"noisy": noisy}
        for name, model in systems.items():
            signals[name] = torch.as_tensor(model.enhance(noisy, rate)).reshape(1, -1)
        for s, wave in signals.items():
            quality[s]["pesq_wb"].append(float(pesq_score(wave[0].numpy(), clean[0].numpy(), rate)))
            quality[s]["si_sdr"].append(float(si_sdr(wave[0].numpy(), clean[0].numpy())))
        with torch.inference_mode():
            for name, net in nets.items():
                targets = net.features(clean, LAYERS)
                for s, wave in signals.items():
                    outs = net.features(wave, LAYERS)
                    distances[name][s].append([float((o - t).abs().mean()) for o, t in zip(outs, targets)])
    report = {"pairs": len(pairs), "layers": LAYERS, "networks": {}}
    for name, per_signal in distances.items():
        noisy_mean = np.mean(per_signal["noisy"], axis=0)
        weights = 1.0 / noisy_mean
        weighted = {s: (np.array(v) * weights).sum(1) for s, v in per_signal.items()}
        rows_loss = np.concatenate([weighted[s] for s in SIGNALS])
        rows_pesq = np.concatenate([quality[s]["pesq_wb"] for s in SIGNALS])
        rows_sdr = np.concatenate([quality[s]["si_sdr"] for s in SIGNALS])
        agree = []
        for i in range(len(pairs)):
            by_loss = np.argsort([weighted[s][i] for s in SIGNALS])
            by_pesq = np.argsort([-quality[s]["pesq_wb"][i] for s in SIGNALS])
            agree.append(bool((by_loss == by_pesq).all()))
        report["networks"][name] = {
            "what": NETWORKS[name],
            "noisy_layer_distance": [round(float(v), 5) for v in noisy_mean],
            "enhanced_over_noisy": {s: [round(float(v), 3) for v in np.mean(per_signal[s], axis=0) / noisy_mean]
                                    for s in SIGNALS if s != "noisy"},
            "weighted_loss_mean": {s: round(float(weighted[s].mean()), 3) for s in SIGNALS},
            "spearman_with_pesq_wb": round(spearman(rows_loss, rows_pesq), 3),
            "spearman_with_si_sdr": round(spearman(rows_loss, rows_sdr), 3),
            "files_ranking_signals_as_pesq_wb": round(float(np.mean(agree)), 3),
        }
    report["quality"] = {s: {k: round(float(np.mean(v)), 3) for k, v in q.items()} for s, q in quality.items()}
    return report


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    layers = np.arange(1, report["layers"] + 1)
    for name, data in report["networks"].items():
        for s, ratios in data["enhanced_over_noisy"].items():
            axes[0].plot(layers, ratios, marker="o", label=f"{name}: {s}")
    axes[0].axhline(1.0, color="grey", lw=0.8)
    axes[0].set(xlabel="layer", ylabel="distance to clean, enhanced / noisy",
                title="How much of each layer's distance enhancement removes")
    axes[0].legend(fontsize=7)
    names = list(report["networks"])
    values = [report["networks"][n]["spearman_with_pesq_wb"] for n in names]
    values_sdr = [report["networks"][n]["spearman_with_si_sdr"] for n in names]
    x = np.arange(len(names))
    axes[1].bar(x - 0.2, values, 0.4, label="PESQ-wb")
    axes[1].bar(x + 0.2, values_sdr, 0.4, label="SI-SDR")
    axes[1].set_xticks(x, names, fontsize=8)
    axes[1].set(ylabel="Spearman correlation with weighted loss", title=f"{report['pairs']} subset pairs x 3 signals")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=69)
    parser.add_argument("--update", action="store_true", help="write the results file and figure")
    args = parser.parse_args()
    report = measure(args.pairs)
    print(json.dumps(report, indent=2))
    if args.update:
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
        plot(report, FIGURE)


if __name__ == "__main__":
    main()
