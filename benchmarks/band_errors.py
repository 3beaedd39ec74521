"""Where in frequency a model's output differs from the clean speech, beside the noisy input's.

    python benchmarks/band_errors.py [--models can-l1 feature-loss-can ...] [--every 10]

On every ``--every``-th pair of the VoiceBank-DEMAND subset, through ``model.enhance``: the
energy of the output and of the error (output - clean) in octave-like bands, in dB relative to
the clean speech's energy in the same band, summed over the files. An error far below 0 dB is
noise removed without harming speech; an output far below 0 dB is speech removed. This is the
diagnosis behind "SI-SDR up, PESQ not yet" of the early CAN weights (README, Models).
Writes ``benchmarks/results/band_errors.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoo.audio import read_audio  # noqa: E402
from zoo.data.files import DATA_ROOT  # noqa: E402
from zoo.data.pairs import paired_files  # noqa: E402

EDGES_HZ = (0, 250, 500, 1000, 2000, 3000, 4000, 6000, 8000)
RESULTS = ROOT / "benchmarks" / "results" / "band_errors.json"
RATE = 16000  # the subset's rate; _mono refuses anything else


def _mono(path) -> np.ndarray:
    wave, rate = read_audio(path)
    if rate != RATE:
        raise SystemExit(f"{path}: {rate} Hz, expected {RATE} Hz (the VoiceBank-DEMAND subset's rate)")
    return wave.numpy().reshape(-1)


def band_energies(wave: np.ndarray, rate: int) -> np.ndarray:
    power = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(wave.shape[-1], 1 / rate)
    return np.array([power[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in zip(EDGES_HZ[:-1], EDGES_HZ[1:])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["feature-loss-can", "can-l1", "can-l2", "wiener"])
    parser.add_argument("--every", type=int, default=10, help="use every N-th pair of the subset")
    args = parser.parse_args()

    import zoo

    files = paired_files(f"voicebank-demand:{DATA_ROOT / 'voicebank-demand-subset'}")[:: args.every]
    pairs = [(_mono(f.noisy), _mono(f.clean)) for f in files]
    clean_energy = sum(band_energies(clean, RATE) for _, clean in pairs)
    report = {"bands_hz": list(EDGES_HZ), "files": [f.name for f in files], "systems": {}}
    outputs = {"noisy": [noisy for noisy, _ in pairs]}
    for name in args.models:
        model = zoo.load(name)
        outputs[name] = [model.enhance(noisy, RATE) for noisy, _ in pairs]
    for name, waves in outputs.items():
        out = sum(band_energies(w, RATE) for w in waves)
        err = sum(band_energies(w - clean, RATE) for w, (_, clean) in zip(waves, pairs))
        report["systems"][name] = {"output_db": np.round(10 * np.log10(out / clean_energy), 2).tolist(),
                                   "error_db": np.round(10 * np.log10(err / clean_energy), 2).tolist()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    bands = [f"{lo}-{hi}" for lo, hi in zip(EDGES_HZ[:-1], EDGES_HZ[1:])]
    print(f"{len(pairs)} files; dB relative to the clean speech in each band (Hz)")
    print("| system | what | " + " | ".join(bands) + " |")
    print("|---|---|" + "---|" * len(bands))
    for name, row in report["systems"].items():
        for what in ("output_db", "error_db"):
            print(f"| {name} | {what[:-3]} | " + " | ".join(f"{v:.1f}" for v in row[what]) + " |")


if __name__ == "__main__":
    main()
