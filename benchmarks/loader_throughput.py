"""How fast each DataModule feeds training: batches/s and seconds of audio made per second.

    .venv/bin/python benchmarks/loader_throughput.py            # table + benchmarks/results/loader_throughput.json
    .venv/bin/python benchmarks/loader_throughput.py --seconds 4 --voicebank-root PATH --chime4-root PATH

Every DataModule's training loader runs with ``num_workers`` worker processes (default 2) on
batches of 16 crops of 2 s at 16 kHz; the first batch (worker start-up, caches) is timed apart,
then batches are drawn for ``--seconds``. "audio s/s" is seconds of 16 kHz audio per second of
wall clock: the samples of the batches delivered (rows x crop; zero-padded rows of the
file-based modules count in full).

VoiceBankDemand and Chime4 (``zoo.data.voicebank`` / ``zoo.data.chime4``) are measured when
they can be imported: VoiceBank-DEMAND on ``--voicebank-root``, else on a training layout
linked to ../shared/data's test subset (the loader's speed, not a training set); CHiME-4 on
``--chime4-root``, else on the fixture tree of tests/test_data_chime4.py (short utterances).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from zoo.data.files import DATA_ROOT  # noqa: E402
from zoo.data.manifest import ManifestDataModule  # noqa: E402
from zoo.data.mixtures import Mixtures  # noqa: E402
from zoo.data.semisupervised import SemiSupervisedMixtures  # noqa: E402
from zoo.data.splits import TRAIN_NOISE, TRAIN_SPEECH  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "loader_throughput.json"
GENERATED = [f"generated:{name}" for name in ("white", "pink", "brown", "speech-shaped", "babble")]
RATE, CROP, BATCH = 16000, 2.0, 16


def measure(name: str, make, seconds: float, note: str = "") -> dict:
    """Set the module up, then time its training loader."""
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = make()
        data.setup("fit")
    setup_s = time.perf_counter() - started
    loader = data.train_dataloader()
    started = time.perf_counter()
    iterator = iter(loader)
    batch = next(iterator)
    first_s = time.perf_counter() - started
    batches, samples, started = 0, 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            continue
        batches += 1
        samples += batch["noisy"].numel()
    elapsed = time.perf_counter() - started
    del iterator, loader
    row = {"datamodule": name, "batches_per_s": batches / elapsed, "audio_s_per_s": samples / RATE / elapsed,
           "batch_shape": list(batch["noisy"].shape), "batches": batches, "first_batch_s": first_s,
           "setup_s": setup_s, "note": note}
    print(f"  {name}: {row['batches_per_s']:.1f} batches/s, {row['audio_s_per_s']:.0f} s of audio/s", flush=True)
    return row


def noisy_recordings(folder: Path, count: int = 40, seconds: float = 4.0) -> Path:
    """Noisy recordings without their clean speech, for the semi-supervised loader: mixtures of
    real speech and real noise written as FLAC (only their noisy sum is kept)."""
    data = ManifestDataModule(crop_seconds=seconds, train_size=count, val_size=1, seed=123)
    data.setup("fit")
    for i in range(count):
        sf.write(folder / f"recording{i:03d}.flac", data.train_set[i]["noisy"].numpy(), RATE)
    return folder


def voicebank_layout(top: Path) -> Path:
    """The official training layout, linked to the test subset's files (same speakers twice)."""
    subset = DATA_ROOT / "voicebank-demand-subset"
    for kind in ("clean", "noisy"):
        for split in (f"{kind}_trainset_28spk_wav", f"{kind}_testset_wav"):
            (top / split).mkdir(parents=True)
            for path in sorted((subset / f"{kind}_testset_wav").glob("*.wav")):
                (top / split / path.name).symlink_to(path)
    return top


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per DataModule")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--voicebank-root")
    parser.add_argument("--chime4-root")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    common = dict(crop_seconds=CROP, batch_size=BATCH, train_size=BATCH * 10_000, val_size=BATCH,
                  num_workers=args.num_workers)
    rows = []
    print(f"loader throughput: {args.num_workers} workers, batches of {BATCH} x {CROP:g} s at {RATE} Hz, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    rows.append(measure("Mixtures (real noise)", lambda: Mixtures(TRAIN_SPEECH, TRAIN_NOISE, **common), args.seconds,
                        "LibriSpeech + LJSpeech x Speech Commands + NOISEX training noises"))
    rows.append(measure("Mixtures (generated noises)", lambda: Mixtures(TRAIN_SPEECH, GENERATED, **common),
                        args.seconds, "white, pink, brown, speech-shaped, babble"))
    rows.append(measure("Mixtures (real + generated)", lambda: Mixtures(TRAIN_SPEECH, TRAIN_NOISE + GENERATED,
                                                                        **common), args.seconds))
    rows.append(measure("ManifestDataModule", lambda: ManifestDataModule(**common), args.seconds,
                        "default groups of MANIFEST.json"))
    with tempfile.TemporaryDirectory() as temporary:
        recordings = noisy_recordings(Path(temporary))
        rows.append(measure("SemiSupervisedMixtures", lambda: SemiSupervisedMixtures(
            ["noise/speech-commands"], [str(recordings)], noise_only_share=0.5, **common), args.seconds,
            "Speech Commands noise-only clips + 40 noisy recordings of 4 s"))
    file_based = dict(crop_seconds=CROP, batch_size=BATCH, num_workers=args.num_workers)
    try:
        from zoo.data.voicebank import VoiceBankDemand
    except ImportError as error:
        print(f"  VoiceBankDemand: skipped ({error})")
    else:
        with tempfile.TemporaryDirectory() as temporary:
            root = args.voicebank_root or str(voicebank_layout(Path(temporary) / "vbd"))
            note = "" if args.voicebank_root else "training layout linked to the 69-pair test subset"
            rows.append(measure("VoiceBankDemand", lambda: VoiceBankDemand(
                root, val_speakers=1, cache_dir=str(Path(temporary) / "cache"), **file_based), args.seconds, note))
    try:
        from zoo.data.chime4 import Chime4
    except ImportError as error:
        print(f"  Chime4: skipped ({error})")
    else:
        with tempfile.TemporaryDirectory() as temporary:
            root, note = args.chime4_root, ""
            if root is None:
                try:
                    sys.path.insert(0, str(ROOT / "tests"))
                    from test_data_chime4 import build_chime4
                    root = str(build_chime4(Path(temporary) / "CHiME4"))
                    note = "fixture tree of tests/test_data_chime4.py (1.0-1.7 s utterances, zero-padded crops)"
                except Exception as error:  # noqa: BLE001 - a missing fixture only skips this row
                    print(f"  Chime4: skipped (no --chime4-root and no fixture tree: {error})")
            if root is not None:
                rows.append(measure("Chime4", lambda: Chime4(root, cache_dir=str(Path(temporary) / "cache"),
                                                             **file_based), args.seconds, note))

    print()
    print(f"| DataModule | batches/s | s of audio / s | first batch (s) | setup (s) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['datamodule']} | {row['batches_per_s']:.1f} | {row['audio_s_per_s']:.0f} | "
              f"{row['first_batch_s']:.2f} | {row['setup_s']:.2f} |")
    report = {"num_workers": args.num_workers, "batch_size": BATCH, "crop_seconds": CROP, "sample_rate": RATE,
              "timed_seconds": args.seconds, "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
              "machine": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
              "numpy": np.__version__, "results": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
