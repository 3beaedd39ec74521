"""On-the-fly mixtures of real speech and real noise at random SNRs.

The full data layer (VoiceBank-DEMAND, CHiME-4, generated noises, active-level SNR) comes with
its own issue; this module is the minimal real one that recipes train on today.
"""
from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .files import audio_files, read_crop, read_looped


class MixtureDataset(Dataset):
    """``length`` mixtures; item i mixes a random speech crop with a random noise crop.

    With ``fixed=True`` (validation) item i is the same mixture every time; otherwise each draw
    is new. Batches are dicts ``{"noisy", "clean", "noise"}`` of [T] float tensors.
    """

    def __init__(self, speech, noise, length: int, crop: int, sample_rate: int,
                 snr_db=(-5.0, 20.0), seed: int = 0, fixed: bool = False):
        self.speech, self.noise = list(speech), list(noise)
        self.length, self.crop, self.sample_rate = length, crop, sample_rate
        self.snr_db, self.seed, self.fixed = tuple(snr_db), seed, fixed
        self.draws = 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        self.draws += 1
        key = [self.seed, index] if self.fixed else [self.seed, index, self.draws]
        rng = np.random.default_rng(key)
        for _ in range(10):  # skip silent speech crops (pauses, leading silence)
            clean = read_crop(self.speech[rng.integers(len(self.speech))], self.crop, self.sample_rate, rng)
            if clean.pow(2).mean() > 1e-6:
                break
        noise = read_looped(self.noise[rng.integers(len(self.noise))], self.crop, self.sample_rate, rng)
        snr = rng.uniform(*self.snr_db)
        noise_power = noise.pow(2).mean().clamp_min(1e-10)
        noise = noise * torch.sqrt(clean.pow(2).mean() / (noise_power * 10 ** (snr / 10)))
        noisy = clean + noise
        peak = noisy.abs().max()
        if peak > 0.99:  # keep mixtures in range without changing their SNR
            clean, noise, noisy = (x * (0.99 / peak) for x in (clean, noise, noisy))
        return {"noisy": noisy, "clean": clean, "noise": noise}


class Mixtures(L.LightningDataModule):
    """Speech folders x noise folders, mixed on the fly; separate folders for validation.

    Paths are files or folders, relative to ``data_root`` (default: $ZOO_DATA or ../shared/data).
    """

    def __init__(self, speech: list[str], noise: list[str], val_speech: list[str], val_noise: list[str],
                 data_root: str | None = None, sample_rate: int = 16000, crop_seconds: float = 2.0,
                 snr_db: tuple[float, float] = (-5.0, 20.0), batch_size: int = 4, train_size: int = 1000,
                 val_size: int = 64, num_workers: int = 0, seed: int = 0, max_files: int | None = None):
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        files = {key: audio_files(getattr(hp, key), hp.data_root)[: hp.max_files]
                 for key in ("speech", "noise", "val_speech", "val_noise")}
        crop = int(hp.crop_seconds * hp.sample_rate)
        self.train_set = MixtureDataset(files["speech"], files["noise"], hp.train_size, crop, hp.sample_rate,
                                        hp.snr_db, hp.seed)
        self.val_set = MixtureDataset(files["val_speech"], files["val_noise"], hp.val_size, crop, hp.sample_rate,
                                      hp.snr_db, hp.seed + 1, fixed=True)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True,
                          num_workers=self.hparams.num_workers, persistent_workers=self.hparams.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)
