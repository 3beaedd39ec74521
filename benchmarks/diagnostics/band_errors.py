"""Where in frequency a model's output differs from the clean speech, beside the noisy input's.

    python benchmarks/diagnostics/band_errors.py [--models can-l1 feature-loss-can ...] [--every 10]
        [--mixtures recipes/data/shared-data.yaml] [--noise-tilt-db -6 0]

On every ``--every``-th pair of the VoiceBank-DEMAND subset, through ``model.enhance``: the
energy of the output and of the error (output - clean) in octave-like bands, in dB relative to
the clean speech's energy in the same band, summed over the files. An error far below 0 dB is
noise removed without harming speech; an output far below 0 dB is speech removed. This is the
diagnosis behind "SI-SDR up, PESQ not yet" of the early CAN weights (docs/experiments.md).

Beside it, the band SNR (clean speech energy over noise energy in each band, median over files)
of all the subset's pairs and of the training mixtures of a recipe's data block (``--mixtures``,
its first ``--mixture-count`` training items, noise as recorded, and again with the recipe's
``noise_tilt_db`` or ``--noise-tilt-db``):
what a model trained on those mixtures has learnt to expect in each band.

And the same output and error energies on the quarter of the subset's pairs with the highest
input SNR (``cleanest_quarter``): there the input is already close to the clean speech, so a
model's error above the input's is damage it does to speech, not noise it leaves.
Writes ``benchmarks/diagnostics/results/band_errors.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from zoo.audio import read_audio  # noqa: E402
from zoo.data.files import DATA_ROOT  # noqa: E402
from zoo.data.pairs import paired_files  # noqa: E402
from zoo.data.from_config import data_block, data_module_from_block  # noqa: E402

EDGES_HZ = (0, 250, 500, 1000, 2000, 3000, 4000, 6000, 8000)
RESULTS = ROOT / "benchmarks" / "diagnostics" / "results" / "band_errors.json"
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


def median_band_snr(pairs) -> list[float]:
    """Median over (speech, noise) pairs of 10 log10(speech energy / noise energy) in each band."""
    snr = [10 * np.log10(band_energies(speech, RATE) / np.maximum(band_energies(noise, RATE), 1e-20))
           for speech, noise in pairs]
    return np.round(np.median(np.array(snr), axis=0), 1).tolist()


def band_report(outputs: dict, pairs) -> dict:
    """Output and error (output - clean) energy of each system in each band, summed over the
    files, in dB relative to the clean speech's energy there."""
    clean_energy = sum(band_energies(clean, RATE) for _, clean in pairs)
    report = {}
    for name, waves in outputs.items():
        out = sum(band_energies(w, RATE) for w in waves)
        err = sum(band_energies(w - clean, RATE) for w, (_, clean) in zip(waves, pairs))
        report[name] = {"output_db": np.round(10 * np.log10(out / clean_energy), 2).tolist(),
                        "error_db": np.round(10 * np.log10(err / clean_energy), 2).tolist()}
    return report


def training_mixtures(config: Path, count: int, noise_tilt_db):
    """(clean, noise) of the first ``count`` training items of the data block of a recipe or a
    resolved config.yaml, with this ``noise_tilt_db`` (None: noise as recorded) whatever the
    recipe says."""
    module = data_module_from_block(data_block(config), train_size=count,
                                    noise_tilt_db=None if noise_tilt_db is None else list(noise_tilt_db))
    for i in range(count):
        item = module.train_set[i]
        yield item["clean"].numpy().astype(np.float64), item["noise"].numpy().astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["feature-loss-can", "can-l1", "can-l2", "wiener"])
    parser.add_argument("--every", type=int, default=10, help="use every N-th pair of the subset")
    parser.add_argument("--mixtures", type=Path, default=ROOT / "recipes/data/shared-data.yaml",
                        help="a data block, recipe or config.yaml whose training mixtures' band SNR to measure")
    parser.add_argument("--mixture-count", type=int, default=200)
    parser.add_argument("--noise-tilt-db", type=float, nargs=2, metavar=("LO", "HI"),
                        help="measure the mixtures with this noise_tilt_db (default: the recipe's)")
    args = parser.parse_args()

    import zoo

    everything = paired_files(f"voicebank-demand:{DATA_ROOT / 'voicebank-demand-subset'}")
    all_pairs = [(_mono(f.noisy), _mono(f.clean)) for f in everything]  # band SNR below uses every pair
    files, pairs = everything[:: args.every], all_pairs[:: args.every]
    report = {"bands_hz": list(EDGES_HZ), "files": [f.name for f in files], "systems": {}}
    outputs = {"noisy": [noisy for noisy, _ in pairs]}
    models = {name: zoo.load(name) for name in args.models}
    for name, model in models.items():
        outputs[name] = [model.enhance(noisy, RATE) for noisy, _ in pairs]
    report["systems"] = band_report(outputs, pairs)
    snr = [10 * np.log10(np.sum(clean**2) / max(np.sum((noisy - clean) ** 2), 1e-20)) for noisy, clean in all_pairs]
    quarter = -(-len(all_pairs) // 4)  # rounded up
    cleanest = sorted(np.argsort(snr)[-quarter:].tolist())
    clean_pairs = [all_pairs[i] for i in cleanest]
    clean_outputs = {"noisy": [noisy for noisy, _ in clean_pairs]}
    for name, model in models.items():
        clean_outputs[name] = [model.enhance(noisy, RATE) for noisy, _ in clean_pairs]
    report["cleanest_quarter"] = {"files": [everything[i].name for i in cleanest],
                                  "input_snr_db": [round(float(snr[i]), 1) for i in cleanest],
                                  "systems": band_report(clean_outputs, clean_pairs)}
    subset = [(clean, noisy - clean) for noisy, clean in all_pairs]
    mixtures_name = args.mixtures.relative_to(ROOT) if args.mixtures.is_relative_to(ROOT) else args.mixtures
    report["band_snr_db"] = {
        f"VoiceBank-DEMAND subset ({len(subset)} pairs)": median_band_snr(subset),
        f"training mixtures of {mixtures_name} ({args.mixture_count}), noise as recorded":
            median_band_snr(training_mixtures(args.mixtures, args.mixture_count, None)),
    }
    tilt = args.noise_tilt_db or (data_block(args.mixtures).get("init_args") or {}).get("noise_tilt_db")
    if tilt:
        report["band_snr_db"][f"the same with noise_tilt_db {list(tilt)}"] = median_band_snr(
            training_mixtures(args.mixtures, args.mixture_count, tilt))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    bands = [f"{lo}-{hi}" for lo, hi in zip(EDGES_HZ[:-1], EDGES_HZ[1:])]
    print(f"{len(pairs)} files; dB relative to the clean speech in each band (Hz)")
    print("| system | what | " + " | ".join(bands) + " |")
    print("|---|---|" + "---|" * len(bands))
    for name, row in report["systems"].items():
        for what in ("output_db", "error_db"):
            print(f"| {name} | {what[:-3]} | " + " | ".join(f"{v:.1f}" for v in row[what]) + " |")
    quarter = report["cleanest_quarter"]
    print(f"\nthe {len(quarter['files'])} pairs of highest input SNR "
          f"({min(quarter['input_snr_db']):.1f}-{max(quarter['input_snr_db']):.1f} dB)")
    print("| system | what | " + " | ".join(bands) + " |")
    print("|---|---|" + "---|" * len(bands))
    for name, row in quarter["systems"].items():
        for what in ("output_db", "error_db"):
            print(f"| {name} | {what[:-3]} | " + " | ".join(f"{v:.1f}" for v in row[what]) + " |")
    print("\nmedian band SNR (dB): clean speech over noise in each band (Hz)")
    print("| mixtures | " + " | ".join(bands) + " |")
    print("|---|" + "---|" * len(bands))
    for name, row in report["band_snr_db"].items():
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in row) + " |")


if __name__ == "__main__":
    main()
