"""Synthetic data sets defined by two of the papers in ../shared/papers, generated in memory.

- :class:`SparseSignals`: the Synthesized-Sparse-Signal (SSS) set of the prior-guided network
  report (Fang, "Neural Networks with Prior Guidance for Signal Denoising and Speech
  Enhancement", sec. IV-A), with :func:`build_sparse_signals` for the whole set as tensors.
- :class:`DetunedChord`: the detuned A-major chord in white Gaussian noise of the partitioned
  autoencoder thesis (ch. "Signal Model and Data", Eq. 24, and "Results", Eqs. 43-48), with the
  noise-only examples its semi-supervised (partitioned and Curro) autoencoders train on.

Both yield the zoo's dict batches ``{"noisy": [B, T], "clean": [B, T], "noise": [B, T], ...}``
in float32, and both are deterministic per ``seed``: the same arguments give the same numbers in
any process, with any number of workers.
"""
from __future__ import annotations

import functools
import math
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .batch import noise_only_rows

#: The report's noise amplitudes: "constant sigma = k, k in {0.5, 1, 1.5, 2, 3, 5, 7}".
SSS_SIGMAS = (0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0)

#: The thesis's Eq. 43: "f = [441, 549, 660, 881] Hz", an A4 major chord (1-3-5-8), detuned.
CHORD_FREQUENCIES_HZ = (441.0, 549.0, 660.0, 881.0)

# Separate random streams, so that changing one part (e.g. the split) never changes another.
_STREAM_SPLIT, _STREAM_TRAIN, _STREAM_VAL = 1, 2, 3


class TensorDictDataset(Dataset):
    """Rows ``indices`` of a dict of equally long tensors; item i is ``{key: tensor[indices[i]]}``."""

    def __init__(self, tensors: dict[str, torch.Tensor], indices: torch.Tensor | None = None):
        lengths = {len(value) for value in tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"all tensors need the same first dimension, got {sorted(lengths)}")
        self.tensors = tensors
        self.indices = torch.arange(lengths.pop()) if indices is None else indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        row = int(self.indices[index])
        item = {key: value[row] for key, value in self.tensors.items()}
        if "clean" in item:  # the batch schema's flag: the synthetic truth is known for every row
            item["has_clean"] = True
        return item


# --------------------------------------------------------------------------------------------
# The sparse signals of the prior-guided network report
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _sparse_arrays(sigmas: tuple[float, ...], per_sigma: int, length: int, nonzero: int, max_value: int,
                   value_type: str, seed: int) -> dict[str, np.ndarray]:
    clean, noise, sigma, label = [], [], [], []
    for index, level in enumerate(sigmas):
        # One stream per noise level, keyed by the level itself: the sigma = 1 block is the same
        # whether it is built alone (the report's single-amplitude runs, Figs. 6, 14, 15) or
        # with all seven levels.
        rng = np.random.default_rng([seed, int(round(level * 1000))])
        positions = rng.random((per_sigma, length)).argsort(axis=1)[:, :nonzero]
        if value_type == "integer":
            amplitudes = rng.integers(1, max_value + 1, size=(per_sigma, nonzero)).astype(np.float64)
        else:
            amplitudes = max_value - rng.uniform(0.0, max_value, size=(per_sigma, nonzero))  # (0, max]
        block = np.zeros((per_sigma, length))
        np.put_along_axis(block, positions, amplitudes, axis=1)
        clean.append(block.astype(np.float32))
        noise.append((level * rng.standard_normal((per_sigma, length))).astype(np.float32))
        sigma.append(np.full(per_sigma, level, dtype=np.float32))
        label.append(np.full(per_sigma, index, dtype=np.int64))
    arrays = {"clean": np.concatenate(clean), "noise": np.concatenate(noise),
              "sigma": np.concatenate(sigma), "label": np.concatenate(label)}
    arrays["noisy"] = arrays["clean"] + arrays["noise"]  # in float32, so noisy - clean == noise exactly
    for array in arrays.values():
        array.flags.writeable = False  # cached: shared by every caller
    return arrays


def _check_sigmas(sigmas) -> tuple[float, ...]:
    sigmas = tuple(float(s) for s in sigmas)
    if not sigmas or any(s <= 0 for s in sigmas) or len(set(sigmas)) != len(sigmas):
        raise ValueError(f"sigmas must be distinct positive noise levels, got {list(sigmas)}; "
                         f"the report uses {list(SSS_SIGMAS)}")
    return sigmas


def build_sparse_signals(sigmas=SSS_SIGMAS, per_sigma: int = 1000, length: int = 100,
                         nonzero_share: float = 0.2, max_value: int = 10,
                         value_type: Literal["integer", "uniform"] = "integer",
                         seed: int = 0) -> dict[str, torch.Tensor]:
    """The whole SSS set as tensors, rows grouped by noise level in the order of ``sigmas``.

    Returns ``{"clean", "noisy", "noise": float32 [N, length], "sigma": float32 [N],
    "label": int64 [N]}`` with ``N = len(sigmas) * per_sigma``; ``label`` is the index of the
    row's noise level in ``sigmas`` and ``noisy == clean + noise`` exactly. Every row has exactly
    ``round(nonzero_share * length)`` non-zero samples. The arrays are built once per argument set
    and cached; each call returns fresh tensors.
    """
    sigmas = _check_sigmas(sigmas)
    nonzero = int(round(nonzero_share * length))
    if not 0 < nonzero <= length:
        raise ValueError(f"nonzero_share={nonzero_share} gives {nonzero} non-zero samples of {length}; "
                         "it must be in (0, 1] (the report uses 0.2)")
    if value_type not in ("integer", "uniform"):
        raise ValueError(f"value_type must be 'integer' or 'uniform', got {value_type!r}")
    if per_sigma < 1 or max_value < 1:
        raise ValueError(f"per_sigma and max_value must be positive, got {per_sigma} and {max_value}")
    arrays = _sparse_arrays(sigmas, int(per_sigma), int(length), nonzero, int(max_value), value_type, int(seed))
    return {key: torch.from_numpy(array.copy()) for key, array in arrays.items()}


def split_sparse_signals(label: torch.Tensor, test_share: float = 0.3, val_share: float = 0.1,
                         stratify: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random train/val/test row indices (sorted int64 tensors) of a set with noise-level ``label``.

    ``test_share`` of all rows is the test set (the report's 30 %); ``val_share`` of the rest is
    carved out of the training rows for validation. With ``stratify`` the shares are taken
    within each noise level, so every level has the same count in every split.
    """
    if not 0 < test_share < 1 or not 0 <= val_share < 1:
        raise ValueError(f"test_share must be in (0, 1) and val_share in [0, 1), got {test_share} and {val_share}")
    rng = np.random.default_rng([seed, _STREAM_SPLIT])
    label = np.asarray(label)
    groups = [np.flatnonzero(label == value) for value in np.unique(label)] if stratify else [np.arange(len(label))]
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for group in groups:
        order = group[rng.permutation(len(group))]
        n_test = int(round(test_share * len(order)))
        rest = order[n_test:]
        n_val = int(round(val_share * len(rest)))
        parts["test"].append(order[:n_test])
        parts["val"].append(rest[:n_val])
        parts["train"].append(rest[n_val:])
    return {name: torch.from_numpy(np.sort(np.concatenate(chunks)).astype(np.int64)) for name, chunks in parts.items()}


class SparseSignals(L.LightningDataModule):
    """The Synthesized-Sparse-Signal (SSS) set of the prior-guided network report, sec. IV-A.

    Batch keys (``batch_keys``): noisy, clean, noise, has_clean, sigma, label.

    The report: "I generate 7000 sequences with a length of 100 samples, 20% of which are
    randomly given non-zero values from 0 to 10. The 7000 sequences are noise-free signals used
    as ground truth. I add white noise to each sequence by following formula
    signal_noise = signal + sigma * noise, where variance of the white noise is 1, constant
    sigma = k, k in {0.5, 1, 1.5, 2, 3, 5, 7}. For each sigma value, I generate 1000 noisy data in
    order to make the dataset highly balanced. [...] I randomly split the dataset into 70%
    trainset and 30% testset."

    What the text leaves open, and what is chosen here:

    - *Which 20 %*: exactly ``round(nonzero_share * length)`` = 20 positions per sequence, drawn
      uniformly without replacement ("20% of which are randomly given non-zero values"), so
      every sequence is exactly 20 % non-zero. (The authors' published samples hold 17-19
      non-zeros per sequence, as positions drawn with replacement would; the text is followed.)
    - *Which values*: integers 1..10 (``value_type="integer"``), uniformly. "Non-zero values from 0
      to 10" excludes 0; integers follow the authors' published samples (every noise-free
      sample in github.com/HaoyuCreate/Research-on-Deep-Denoising, TrainSample/labels and
      TestSamples, is a whole number) and the PSNR peak "MAX is 10 [...] in SSS Dataset"
      (Eq. 11). ``value_type="uniform"`` draws reals in (0, 10] instead.
    - *Noise*: standard normal ("variance of the white noise is 1") times sigma; each of the
      7000 clean sequences gets one noise level, 1000 sequences per level.
    - *Split*: a plain random 70/30 split of all sequences (``stratify=False``: "I randomly split
      the dataset"); ``stratify=True`` splits within each noise level (700/300 each).
    - *Validation*: the report has none; its code monitors the test set ("if the performance on
      test set does not improve for 10 consecutive epochs then I decay the learning rate").
      Here ``val_share`` (10 %) of the 4900 training sequences validates (4410/490/2100);
      ``val_share=0`` reproduces the report by validating on the test set.
    - *Batch size*: not stated in the report (its code defaults to 1); 32.

    What the prior-guided network needs besides the pair: its prior mask comes from a Wiener
    (local-mean) filter of the noisy signal, whose "parameter sigma^2 is a threshold noise
    parameter. If sigma is not given then it is estimated as the average of the local variances"
    (NumPy update, sec. 2.3, Eq. 3). Batches therefore carry the true noise level:

    ``{"noisy", "clean", "noise": float32 [B, 100], "sigma": float32 [B] (the noise standard
    deviation k; square it for Eq. 3's sigma^2), "label": int64 [B] (index of k in sigmas, for
    per-level results like the report's Figs. 14-16)}``.

    ``sigmas`` may name a subset (the report's single-amplitude runs use one level, Figs. 14 and
    15 use {1, 1.5} and {0.5, 3}); each level's 1000 sequences are the same in every subset.
    """

    #: the schema keys of every batch (zoo.data.batch.BATCH_SCHEMA)
    batch_keys = ("noisy", "clean", "noise", "has_clean", "sigma", "label")

    def __init__(self, sigmas: tuple[float, ...] = SSS_SIGMAS, per_sigma: int = 1000, length: int = 100,
                 nonzero_share: float = 0.2, max_value: int = 10,
                 value_type: Literal["integer", "uniform"] = "integer", test_share: float = 0.3,
                 val_share: float = 0.1, stratify: bool = False, batch_size: int = 32, num_workers: int = 0,
                 seed: int = 0):
        super().__init__()
        _check_sigmas(sigmas)
        self.save_hyperparameters()
        self.data: dict[str, torch.Tensor] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        hp = self.hparams
        self.data = build_sparse_signals(hp.sigmas, hp.per_sigma, hp.length, hp.nonzero_share, hp.max_value,
                                         hp.value_type, hp.seed)
        self.splits = split_sparse_signals(self.data["label"], hp.test_share, hp.val_share, hp.stratify, hp.seed)
        self.train_set, self.val_set, self.test_set = (TensorDictDataset(self.data, self.splits[name])
                                                       for name in ("train", "val", "test"))

    def _loader(self, dataset: Dataset, shuffle: bool = False) -> DataLoader:
        hp = self.hparams
        generator = torch.Generator().manual_seed(hp.seed) if shuffle else None
        return DataLoader(dataset, batch_size=hp.batch_size, shuffle=shuffle, generator=generator,
                          num_workers=hp.num_workers, persistent_workers=hp.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        # val_share=0: validate on the test set, as the report's own training did.
        return self._loader(self.val_set if len(self.val_set) else self.test_set)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set)


# --------------------------------------------------------------------------------------------
# The detuned A-major chord of the partitioned autoencoder thesis
# --------------------------------------------------------------------------------------------

def chord_clips(rng: np.random.Generator, count: int, samples: int, sample_rate: int = 16000,
                frequencies=CHORD_FREQUENCIES_HZ, amplitude_range=(0.25, 0.75)):
    """``count`` clips of the thesis's Eq. 44, float64 [count, samples], with their parameters.

    ``x[n] = sum_i A_i sin(2 pi f_i / f_s n + phi_i)``, ``A_i ~ U(0.25, 0.75)`` (Eq. 45),
    ``phi_i ~ U(0, 2 pi)`` (Eq. 46), drawn per clip. Returns ``(clips, amplitudes, phases)``,
    the last two [count, len(frequencies)].
    """
    frequencies = np.asarray(frequencies, dtype=np.float64)
    amplitudes = rng.uniform(*amplitude_range, size=(count, len(frequencies)))
    phases = rng.uniform(0.0, 2 * np.pi, size=(count, len(frequencies)))
    n = np.arange(samples, dtype=np.float64)
    angles = 2 * np.pi * frequencies[None, :, None] / sample_rate * n + phases[:, :, None]
    return (amplitudes[:, :, None] * np.sin(angles)).sum(axis=1), amplitudes, phases


def minibatch_noise_variance(clean: np.ndarray, snr_db: float) -> float:
    """The thesis's Eq. 24: ``sigma_n^2 = 1 / SNR_lin * 1 / (B N) * sum_b sum_n x_b[n]^2``.

    ``clean`` is [B, N]: the minibatch's signal-bearing examples. ``SNR_lin = 10^(SNR_dB / 10)``
    (Eq. 25).
    """
    return float(np.mean(np.square(clean)) / 10 ** (snr_db / 10))


def chord_batch(rng: np.random.Generator, batch_size: int, samples: int, snr_db: float, noise_only: int = 0,
                sample_rate: int = 16000, frequencies=CHORD_FREQUENCIES_HZ,
                amplitude_range=(0.25, 0.75)) -> dict[str, torch.Tensor]:
    """One minibatch: chords in white Gaussian noise at ``snr_db`` for the minibatch (Eq. 24).

    The first ``noise_only`` examples are noise-only (clean = 0, ``noise_only`` True), the rest
    chords plus noise. One noise variance serves the whole minibatch, set from the average
    energy of its signal-bearing examples.
    """
    if not 0 <= noise_only < batch_size:
        raise ValueError(f"a minibatch of {batch_size} needs at least one chord, got {noise_only} noise-only examples")
    clean = np.zeros((batch_size, samples))
    clean[noise_only:], _, _ = chord_clips(rng, batch_size - noise_only, samples, sample_rate, frequencies,
                                           amplitude_range)
    variance = minibatch_noise_variance(clean[noise_only:], snr_db)
    noise = math.sqrt(variance) * rng.standard_normal((batch_size, samples))  # Eq. 47: N(0, sigma^2)
    clean32, noise32 = clean.astype(np.float32), noise.astype(np.float32)
    flags = np.zeros(batch_size, dtype=bool)
    flags[:noise_only] = True
    return {"noisy": torch.from_numpy(clean32 + noise32), "clean": torch.from_numpy(clean32),
            "noise": torch.from_numpy(noise32), "noise_only": torch.from_numpy(flags),
            "has_clean": torch.ones(batch_size, dtype=torch.bool),  # synthetic: every row's truth is known
            "sigma": torch.full((batch_size,), math.sqrt(variance), dtype=torch.float32)}


class ChordBatches(Dataset):
    """``length`` whole minibatches; item i is always the same minibatch for a given ``seed``
    (use with ``DataLoader(batch_size=None)``)."""

    def __init__(self, length: int, batch_size: int, samples: int, snr_db: float, noise_only: int, seed: int,
                 stream: int, **chord):
        self.length, self.batch_size, self.samples = length, batch_size, samples
        self.snr_db, self.noise_only, self.seed, self.stream, self.chord = snr_db, noise_only, seed, stream, chord

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, self.stream, index])
        return chord_batch(rng, self.batch_size, self.samples, self.snr_db, self.noise_only, **self.chord)


class DetunedChord(L.LightningDataModule):
    """The detuned A-major chord in white Gaussian noise of the partitioned autoencoder thesis.

    Batch keys (``batch_keys``): noisy, clean, noise, has_clean, noise_only, sigma.

    The signal ("Results", Eqs. 43-46): "The examples used are a sum of sine waves at four fixed
    frequencies with uniform random amplitude and phase. The frequencies are chosen to form an
    A4 major chord (1-3-5-8) at slightly de-tuned frequencies so as not to allow the network to
    learn any pattern from the immediate harmonic structure": f = [441, 549, 660, 881] Hz,
    x[n] = sum_i A_i sin(2 pi f_i / f_s n + phi_i), n = 0 ... 1023, A_i ~ U(0.25, 0.75),
    phi ~ U(0, 2 pi). "Training minibatches consist of 128 examples, each with 1024-sample FFT
    frames [...] at a sampling rate 16 kHz."

    The noise (Eqs. 24, 47): "Applied noise is additive-white Gaussian noise (AWGN), with the
    variance sigma^2 selected to achieve the desired average SNR for each minibatch as in
    Equation 24", where "we take the average signal energy for each minibatch of size B to
    determine a multiplicative scale factor k on the noise signal N[n]": sigma_n^2 =
    1/SNR_lin * 1/(BN) * sum_b sum_n x_b^2[n]. So one noise variance per minibatch, from the
    mean square of its chords' samples; individual examples' SNRs scatter around the target,
    the minibatch's SNR (mean clean power / noise variance) hits it.

    The noise-only examples (partitioned autoencoder and Curro autoencoder): "In semi-supervised
    cases where we use the soft label y for noise-only versus signal-plus-noise examples, we use
    25% noise-only examples per minibatch", and "we use minibatches with fixed ordering
    corresponding to the same proportion of signal-plus-noise examples and noise-only examples
    such that C does not change on each training iteration". With ``noise_only_share=0.25`` the
    first ``floor(0.25 * batch_size)`` examples of every training minibatch (32 of 128) are
    noise-only: ``clean`` is zero, ``noisy`` is pure noise, ``noise_only`` is True. The default 0
    is the supervised setting.

    What the thesis leaves open or contradicts, and what is chosen here:

    - *Eq. 24 with noise-only examples*: the text's sum runs over the whole minibatch, but its
      code sets the variance from the chord examples only ("use only the signal examples do
      determine noise variance"), which keeps the SNR of the chords at the target whatever the
      share; that is done here. Without noise-only examples the two agree.
    - *Noise scale*: sigma = sqrt(sigma_n^2), as Eq. 47 ``N(0, sigma^2)`` says; the appendix code
      passes the variance as the standard deviation (``np.random.normal(0, var, ...)``), which
      the text does not describe.
    - *Noise-only share*: 25 % as the text says; the appendix code has 0.5.
    - *SNR*: the thesis sweeps -6, -3, 0, 3 and 6 dB, one per run; default 0 dB.
    - *Training length*: "2000 iterations (minibatches) are used for each simulation":
      ``train_batches=2000`` per epoch, so one epoch is one simulation; minibatch i is the same
      in every epoch (later epochs repeat the data).
    - *Validation*: the thesis plots "the MSE every 50 training examples for an inference
      example that does not change", built (in its code) as one chord with fixed amplitudes and
      phases, long enough for 128 frames at 50 % overlap, cut into "consecutive overlapping,
      windowed frames". Here each of ``val_batches`` validation batches is one such continuous
      chord, [1, val_samples] with val_samples = 127 * 512 + 1024 = 66048, noise by Eq. 24 over
      that clip, no noise-only part; a model frames it with its own front-end. With
      ``val_samples=None`` validation batches are ordinary chord minibatches
      [batch_size, clip_samples] without noise-only examples. Validation data is the same every
      epoch.

    Batches: ``{"noisy", "clean", "noise": float32 [B, T], "noise_only": bool [B], "sigma":
    float32 [B] (the minibatch's noise standard deviation, the same for every row)}``.
    """

    #: the schema keys of every batch (zoo.data.batch.BATCH_SCHEMA)
    batch_keys = ("noisy", "clean", "noise", "has_clean", "noise_only", "sigma")

    def __init__(self, snr_db: float = 0.0, batch_size: int = 128, clip_samples: int = 1024,
                 sample_rate: int = 16000, frequencies: tuple[float, ...] = CHORD_FREQUENCIES_HZ,
                 amplitude_range: tuple[float, float] = (0.25, 0.75), noise_only_share: float = 0.0,
                 train_batches: int = 2000, val_batches: int = 1, val_samples: int | None = 66048,
                 num_workers: int = 0, seed: int = 0):
        super().__init__()
        if not 0 <= noise_only_share < 1:
            raise ValueError(f"noise_only_share={noise_only_share} leaves no chord in a minibatch of {batch_size}; "
                             "use a share in [0, 1) (the thesis uses 0.25)")
        # the data layer's one rule (zoo.data.batch): a whole number of rows, or a clear error; the
        # thesis's code floored (int(share * batchsize)), which silently changes an odd batch's share
        if noise_only_rows(batch_size, noise_only_share) >= batch_size:
            raise ValueError(f"noise_only_share={noise_only_share} leaves no chord in a minibatch of {batch_size}")
        if any(not 0 < f < sample_rate / 2 for f in frequencies):
            raise ValueError(f"frequencies {list(frequencies)} must lie between 0 and the Nyquist frequency "
                             f"{sample_rate / 2} Hz of sample_rate={sample_rate}")
        low, high = amplitude_range
        if not 0 <= low <= high:
            raise ValueError(f"amplitude_range must be (low, high) with 0 <= low <= high, got {amplitude_range}")
        if (min(batch_size, clip_samples, train_batches) < 1 or val_batches < 0
                or (val_samples is not None and val_samples < 1)):
            raise ValueError("batch_size, clip_samples and train_batches must be positive, val_batches >= 0 "
                             "and val_samples positive or None")
        self.save_hyperparameters()

    def _chord_args(self) -> dict:
        hp = self.hparams
        return {"sample_rate": hp.sample_rate, "frequencies": tuple(hp.frequencies),
                "amplitude_range": tuple(hp.amplitude_range)}

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        self.train_set = ChordBatches(hp.train_batches, hp.batch_size, hp.clip_samples, hp.snr_db,
                                      noise_only_rows(hp.batch_size, hp.noise_only_share), hp.seed, _STREAM_TRAIN,
                                      **self._chord_args())
        if hp.val_samples is None:
            self.val_set = ChordBatches(hp.val_batches, hp.batch_size, hp.clip_samples, hp.snr_db, 0, hp.seed,
                                        _STREAM_VAL, **self._chord_args())
        else:
            self.val_set = ChordBatches(hp.val_batches, 1, hp.val_samples, hp.snr_db, 0, hp.seed, _STREAM_VAL,
                                        **self._chord_args())

    def _loader(self, dataset: Dataset) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(dataset, batch_size=None, num_workers=workers, persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set)  # minibatches are i.i.d.; their order needs no shuffling

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set)


__all__ = ["CHORD_FREQUENCIES_HZ", "SSS_SIGMAS", "ChordBatches", "DetunedChord", "SparseSignals",
           "TensorDictDataset", "build_sparse_signals", "chord_batch", "chord_clips", "minibatch_noise_variance",
           "split_sparse_signals"]
