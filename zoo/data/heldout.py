"""A fixed, held-out mixture test set built from ../shared/data (speakers and noises of no
training or validation split), written as noisy/clean WAV folders plus a manifest so that
``zoo eval --data manifest:PATH/manifest.csv`` and the benchmarks score it like any other set."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..audio import atomic_output
from .files import audio_files, read_crop, read_looped
from .splits import TEST_NOISE, TEST_SPEECH

#: bump when the recipe below changes, so cached copies are rebuilt
VERSION = 1
SNRS_DB = (0.0, 5.0, 10.0, 15.0)  # like VoiceBank-DEMAND's test SNRs (2.5 .. 17.5), a little harder


def build_heldout_set(out, n_files: int = 48, seconds: float = 4.0, sample_rate: int = 16000,
                      seed: int = 2024, root=None, noise: list | None = None) -> Path:
    """Write ``out/{noisy,clean}/*.wav`` and ``out/manifest.csv``; reuse them if already built.
    ``noise``: other noise files or folders than the held-out noise types (the noise of a
    fine-tuning experiment, say), mixed with the same held-out speakers."""
    out = Path(out)
    noise_entries = [str(n) for n in (noise or TEST_NOISE)]
    stamp = {"version": VERSION, "n_files": n_files, "seconds": seconds, "sample_rate": sample_rate,
             "seed": seed, "speech": TEST_SPEECH, "noise": noise_entries, "snrs_db": list(SNRS_DB)}
    manifest = out / "manifest.csv"
    if manifest.is_file() and (out / "recipe.json").is_file() and json.loads((out / "recipe.json").read_text()) == stamp:
        return manifest
    speech, noise = audio_files(TEST_SPEECH, root), audio_files(noise_entries, root)
    rng = np.random.default_rng(seed)
    frames = int(seconds * sample_rate)
    rows = []
    for folder in ("noisy", "clean"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        speech_file = speech[i % len(speech)] if i < len(speech) else speech[rng.integers(len(speech))]
        for _ in range(20):  # a crop with speech in it
            clean = torch.from_numpy(read_crop(speech_file, frames, sample_rate, rng, pad="end"))
            if clean.pow(2).mean() > 1e-5:
                break
        noise_file = noise[i % len(noise)]
        snr = SNRS_DB[i % len(SNRS_DB)]
        interference = torch.from_numpy(read_looped(noise_file, frames, sample_rate, rng, pad="end"))
        interference = interference * torch.sqrt(clean.pow(2).mean() / (interference.pow(2).mean() * 10 ** (snr / 10)))
        noisy = clean + interference
        scale = min(1.0, 0.9 / float(noisy.abs().max()))
        name = f"{i:03d}_{speech_file.stem}_{noise_file.stem[:12]}_{int(snr)}dB.wav"
        for folder, wave in (("noisy", noisy), ("clean", clean)):
            with atomic_output(out / folder / name) as temporary:
                sf.write(temporary, (wave * scale).numpy(), sample_rate, subtype="FLOAT", format="WAV")
        rows.append({"name": name, "noisy": f"noisy/{name}", "clean": f"clean/{name}", "snr_db": snr,
                     "speech": speech_file.name, "noise": noise_file.name})
    with atomic_output(manifest) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "recipe.json").write_text(json.dumps(stamp, indent=2))
    return manifest
