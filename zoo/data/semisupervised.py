"""Semi-supervised batches for the partitioned autoencoders: noise-only clips and noisy
recordings, with no clean speech anywhere.

The partitioned-autoencoder thesis (partitioned-autoencoder-thesis.txt, "Partitioned
Autoencoder" and "Curro Autoencoder") trains on a soft label only: "(1) noise-only or (2) noise
and possibly signal", with "minibatches with fixed ordering corresponding to the same proportion
of signal-plus-noise examples and noise-only examples such that C does not change on each
training iteration" (its code zeroes the first ``int(batchsize * nop)`` examples). Here every
training batch holds exactly ``noise_only_share * batch_size`` noise-only clips, always in its
first rows, then crops of noisy recordings. :class:`zoo.data.synthetic.DetunedChord` makes the
thesis's own synthetic batches in the same layout.

Training batch keys (B rows, T samples):

- ``"noisy"`` [B, T]: the network's input: the noise-only clip, or the noisy recording's crop;
- ``"noise_only"`` [B] bool: True for the noise-only rows (the thesis's soft label);
- ``"has_clean"`` [B] bool: whether ``"clean"`` and ``"noise"`` hold the truth for the row.
  True for noise-only rows (their clean speech is silence, their noise the clip), False for
  noisy recordings, whose clean speech nobody has;
- ``"clean"`` [B, T]: zeros in every row (finite, so nothing turns NaN). For noise-only rows
  that is the truth; for the others it is a placeholder that must not be trained on;
- ``"noise"`` [B, T]: the clip for noise-only rows, zeros for noisy recordings.

So that a supervised loss is never trained on the placeholders by accident, a supervised model
(``zoo.module.DenoiserModule`` without ``semi_supervised = True``) refuses a training batch with
rows whose ``has_clean`` is False: the check is the model's, on what it is fed; the data layer
never asks what a model is.

Validation batches are supervised mixtures of held-out speech and noise
(``zoo.data.splits``: no clean speech of the training data is needed), with ``noise_only``
all False and ``has_clean`` all True, so that validation metrics compare against real clean
speech.

Levels: recordings keep the level they were recorded at (noise-only clips and noisy recordings
from the same set-up stay comparable), times a random gain ``U(gain_db)`` if ``gain_db`` is
given; a crop whose peak would exceed 0.99 is scaled down. Digitally silent crops are drawn
again.
"""
from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from .mixtures import (MAX_DRAWS, PEAK_LIMIT, AudioFile, MixtureDataset, _WholeFiles, catalogue, check_mixing_args,
                       find_audio, read_crop, read_looped, split_generated)
from .splits import VAL_NOISE, VAL_SPEECH
from .batch import noise_only_rows
from .files import path_list

_STREAM_SEMI = 2
NOISE_ONLY, NOISY = 0, 1


class BatchNumbers(Sampler[int]):
    """The batch numbers ``0 .. batches - 1`` of an epoch, and the epoch: the inner sampler of
    :class:`NoiseOnlyShareBatchSampler`. Under DDP Lightning replaces it by a ``DistributedSampler``
    over the same numbers (``len`` of the loader's dataset, :class:`_Batches`), so each rank takes
    its own share of the batches, and calls ``set_epoch`` on it. Without ``set_epoch`` (a plain
    loop) each pass is the next epoch."""

    def __init__(self, batches: int):
        self.batches, self.epoch = int(batches), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.batches

    def __iter__(self):
        yield from range(self.batches)
        self.epoch += 1


class NoiseOnlyShareBatchSampler(BatchSampler):
    """A PyTorch ``BatchSampler``: for every batch number its inner ``sampler`` yields, the keys
    ``[(NOISE_ONLY, epoch, i) x k] + [(NOISY, epoch, j) x (B - k)]`` of that batch: exactly ``k``
    noise-only rows, first. Items depend on (seed, kind, epoch, index) only, so whichever rank
    draws a batch number reads the same rows, and under DDP (where Lightning injects a
    ``DistributedSampler`` as ``sampler``, this class following the ``BatchSampler`` API) every
    row of an epoch is read once across the ranks, each with the share (when the number of
    batches divides by the number of ranks; otherwise ``DistributedSampler`` repeats a few)."""

    def __init__(self, sampler: Sampler[int] | int, batch_size: int, drop_last: bool = True, noise_only: int = 0):
        super().__init__(BatchNumbers(sampler) if isinstance(sampler, int) else sampler, batch_size, drop_last)
        if not 0 <= noise_only <= batch_size:
            raise ValueError(f"noise_only={noise_only} rows do not fit a batch of {batch_size}")
        self.noise_only = noise_only

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        epoch = getattr(self.sampler, "epoch", 0)  # read before the inner sampler moves it on
        k, rest = self.noise_only, self.batch_size - self.noise_only
        for b in self.sampler:
            yield ([(NOISE_ONLY, epoch, b * k + i) for i in range(k)]
                   + [(NOISY, epoch, b * rest + i) for i in range(rest)])


class _Batches(Dataset):
    """The training set as a DataLoader sees it: items by key, and ``len`` = batches per epoch,
    the units a distributed sampler shares out among ranks (see :class:`BatchNumbers`)."""

    def __init__(self, items: Dataset, batches: int):
        self.items, self.batches = items, batches

    def __len__(self) -> int:
        return self.batches

    def __getitem__(self, key) -> dict:
        return self.items[key]


class SemiSupervisedDataset(Dataset):
    """Items keyed ``(kind, epoch, index)``: a noise-only clip (kind 0) or a crop of a noisy
    recording (kind 1), at the recorded level times a random gain."""

    def __init__(self, noise_only: list[AudioFile], noisy: list[AudioFile], crop: int, sample_rate: int,
                 gain_db=None, seed: int = 0):
        if not noise_only or not noisy:
            raise ValueError("semi-supervised batches need noise-only recordings and noisy recordings")
        self.noise_only, self.noisy, self.crop, self.sample_rate = noise_only, noisy, crop, sample_rate
        self.gain_db, self.seed = None if gain_db is None else tuple(gain_db), seed
        self._short = _WholeFiles(sample_rate)

    def __getitem__(self, key) -> dict:
        kind, epoch, index = key
        rng = np.random.default_rng([self.seed, _STREAM_SEMI, kind, epoch, index])
        for _ in range(MAX_DRAWS):
            if kind == NOISE_ONLY:
                file = self.noise_only[rng.integers(len(self.noise_only))]
                wave = read_looped(file, self.crop, self.sample_rate, rng, self._short)
            else:
                wave = read_crop(self.noisy[rng.integers(len(self.noisy))], self.crop, self.sample_rate, rng)
            if np.any(wave):
                break
        gain = 1.0 if self.gain_db is None else 10 ** (rng.uniform(*self.gain_db) / 20)
        peak = float(np.max(np.abs(wave))) * gain
        if peak > PEAK_LIMIT:
            gain *= PEAK_LIMIT / peak
        wave = torch.from_numpy((wave * gain).astype(np.float32))
        zeros = torch.zeros_like(wave)
        noise_only = kind == NOISE_ONLY
        return {"noisy": wave, "clean": zeros, "noise": wave.clone() if noise_only else zeros,
                "noise_only": noise_only, "has_clean": noise_only}


class _SupervisedRows(Dataset):
    """Validation mixtures with the training batches' keys: noise_only False, has_clean True."""

    def __init__(self, mixtures: MixtureDataset):
        self.mixtures = mixtures

    def __len__(self) -> int:
        return len(self.mixtures)

    def __getitem__(self, index) -> dict:
        return {**self.mixtures[index], "noise_only": False, "has_clean": True}


class SemiSupervisedMixtures(L.LightningDataModule):
    """Noise-only recordings + noisy recordings without clean speech, for the partitioned
    autoencoders (see the module docstring for the batch keys).

    Args:
        noise_only: audio files or folders of noise-only recordings (relative to ``data_root``
            = ``$ZOO_DATA`` or ../shared/data, or absolute); looped when shorter than the crop.
        noisy: audio files or folders of noisy recordings (speech in noise, no clean reference).
        val_speech, val_noise: held-out clean speech and noise for supervised validation
            mixtures (defaults: ``zoo.data.splits.VAL_SPEECH`` / ``VAL_NOISE``); ``val_noise``
            may name generated noises.
        noise_only_share: share of every training batch that is noise-only (the thesis: 0.25;
            its code: 0.5); ``noise_only_share * batch_size`` must be a whole number.
        gain_db: random gain on the recorded level, ``[low, high]`` dB (null, the default: none).
        snr_db: SNR range of the validation mixtures (against the active speech level, P.56).
        train_size: training rows per epoch (a multiple of ``batch_size``; the last partial
            batch is dropped so every batch has the exact share).
    """

    #: the schema keys of every batch (zoo.data.batch.BATCH_SCHEMA)
    batch_keys = ("noisy", "clean", "noise", "has_clean", "noise_only")

    def __init__(self, noise_only: list[str] | str, noisy: list[str] | str, val_speech: list[str] | str | None = None,
                 val_noise: list[str] | str | None = None, data_root: str | None = None, sample_rate: int = 16000,
                 crop_seconds: float = 2.0, noise_only_share: float = 0.5,
                 gain_db: tuple[float, float] | None = None, snr_db: tuple[float, float] = (-5.0, 20.0),
                 batch_size: int = 8, train_size: int = 1000, val_size: int = 64, num_workers: int = 0,
                 seed: int = 0, max_files: int | None = None):
        super().__init__()
        noise_only, noisy = path_list(noise_only, f"{type(self).__name__} noise_only"), path_list(noisy, f"{type(self).__name__} noisy")
        val_speech = path_list(val_speech, f"{type(self).__name__} val_speech")
        val_noise = path_list(val_noise, f"{type(self).__name__} val_noise")
        check_mixing_args(snr_db, None, gain_db, crop_seconds, batch_size, train_size, val_size, 1)
        noise_only_rows(batch_size, noise_only_share)
        if train_size < batch_size:
            raise ValueError(f"train_size={train_size} is less than one batch of {batch_size}")
        for key, entries in (("noise_only", noise_only), ("noisy", noisy)):
            if split_generated(entries)[1]:
                raise ValueError(f"SemiSupervisedMixtures {key}: generated noises have no recorded level to "
                                 "match the noisy recordings; give recordings (files or folders)")
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        name = type(self).__name__
        self.skipped_silent: dict[str, list[str]] = {}
        pools = {}
        for key in ("noise_only", "noisy"):
            paths = find_audio(getattr(hp, key), hp.data_root, f"{name} {key}", hp.max_files)
            pools[key], self.skipped_silent[key] = catalogue(paths, f"{name} {key}")
            if not pools[key]:
                raise ValueError(f"{name} {key}: no usable audio (every file is silent)")
        crop = int(round(hp.crop_seconds * hp.sample_rate))
        self.train_set = SemiSupervisedDataset(pools["noise_only"], pools["noisy"], crop, hp.sample_rate,
                                               hp.gain_db, hp.seed)
        val_paths, generated = split_generated(hp.val_noise or VAL_NOISE)
        val_noise, self.skipped_silent["val_noise"] = catalogue(
            find_audio(val_paths, hp.data_root, f"{name} val_noise") if val_paths else [], f"{name} val_noise")
        val_speech, self.skipped_silent["val_speech"] = catalogue(
            find_audio(hp.val_speech or VAL_SPEECH, hp.data_root, f"{name} val_speech"), f"{name} val_speech")
        self.val_set = _SupervisedRows(MixtureDataset(val_speech, val_noise + [f"generated:{g}" for g in generated],
                                                      hp.val_size, crop, hp.sample_rate, hp.snr_db, hp.seed,
                                                      fixed=True))

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        batches = hp.train_size // hp.batch_size
        sampler = NoiseOnlyShareBatchSampler(BatchNumbers(batches), hp.batch_size, True,
                                             noise_only_rows(hp.batch_size, hp.noise_only_share))
        return DataLoader(_Batches(self.train_set, batches), batch_sampler=sampler, num_workers=hp.num_workers,
                          persistent_workers=hp.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)


__all__ = ["NOISE_ONLY", "NOISY", "BatchNumbers", "NoiseOnlyShareBatchSampler", "SemiSupervisedDataset", "SemiSupervisedMixtures",
           "noise_only_rows"]
