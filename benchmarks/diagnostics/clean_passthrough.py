"""What each model does to speech that has no noise in it: the ceiling its fidelity puts on PESQ.

    python benchmarks/diagnostics/clean_passthrough.py [--every 7] [--models feature-loss-can wiener ...] [--update]

Every ``--every``-th clean file of the VoiceBank-DEMAND subset is enhanced as it is (no noise
added) through ``model.enhance``, and the output is scored against that same clean file:
PESQ-wb (4.64 would mean untouched), SNR, and the output-to-clean level per band. A denoiser
that leaves clean speech alone scores near the top; the PESQ-wb a model reaches here bounds what
it can reach on the cleaner noisy files. Models are names or card folders, as ``zoo.load`` takes.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import zoo  # noqa: E402
from zoo.audio import read_audio  # noqa: E402
from zoo.data.files import DATA_ROOT  # noqa: E402
from zoo.metrics.perceptual import pesq_score  # noqa: E402
from zoo.metrics.ratios import snr  # noqa: E402

RESULTS = ROOT / "benchmarks" / "diagnostics" / "results" / "clean_passthrough.json"
BANDS = [(0, 250), (250, 1000), (1000, 2000), (2000, 4000), (4000, 8000)]


def band_levels(output: np.ndarray, clean: np.ndarray, sample_rate: int) -> dict[str, float]:
    """Output energy over clean energy per band (dB), over the whole file."""
    out_spectrum = np.abs(np.fft.rfft(output)) ** 2
    clean_spectrum = np.abs(np.fft.rfft(clean)) ** 2
    freqs = np.fft.rfftfreq(len(clean), 1 / sample_rate)
    levels = {}
    for low, high in BANDS:
        band = (freqs >= low) & (freqs < high)
        levels[f"{low}-{high} Hz"] = float(10 * np.log10(out_spectrum[band].sum() / clean_spectrum[band].sum()))
    return levels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["feature-loss-can", "can-l1", "can-l2", "wiener"])
    parser.add_argument("--every", type=int, default=7, help="use every N-th clean file of the subset")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--update", action="store_true", help=f"write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    files = sorted((DATA_ROOT / "voicebank-demand-subset" / "clean_testset_wav").glob("*.wav"))[:: args.every]
    report = {"files": [f.name for f in files], "systems": {}}
    for name in args.models:
        model = zoo.load(name)
        rows = []
        for path in files:
            wave, rate = read_audio(path)
            clean = wave.numpy().reshape(-1)
            output = np.asarray(model.enhance(clean, sample_rate=rate))
            rows.append({"pesq_wb": pesq_score(output, clean, rate), "snr": snr(output, clean),
                         **band_levels(output, clean, rate)})
        summary = {key: round(statistics.mean(r[key] for r in rows), 3) for key in rows[0]}
        summary["pesq_wb_range"] = [round(min(r["pesq_wb"] for r in rows), 2), round(max(r["pesq_wb"] for r in rows), 2)]
        report["systems"][name] = summary
        print(f"{name}: PESQ-wb {summary['pesq_wb']:.2f} ({summary['pesq_wb_range'][0]}-{summary['pesq_wb_range'][1]}), "
              f"SNR {summary['snr']:.1f} dB, band levels "
              + " ".join(f"{band} {summary[band]:+.1f}" for band in (f"{lo}-{hi} Hz" for lo, hi in BANDS)), flush=True)
    if args.update:
        RESULTS.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
