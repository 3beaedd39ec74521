"""On-the-fly mixtures of speech and noise at random SNRs, gains and crops.

:class:`Mixtures` mixes speech files or folders with noise files, folders or generated noises
(``"generated:white"``, ``"generated:pink"``, ``"generated:brown"``, ``"generated:speech-shaped"``,
``"generated:babble"``; see :mod:`zoo.data.noises`). :class:`zoo.data.manifest.ManifestDataModule`
picks the same pools from ``MANIFEST.json`` and mixes them with this module's code.

How an item is made (:class:`MixtureDataset`), in this order, all from one random generator
seeded by ``(seed, split, epoch, index)``:

1. a random crop of ``crop_seconds`` of a random speech file (zero-padded at a random place when
   the file is shorter); crops with speech active less than 20 % of the time (ITU-T P.56
   activity factor) are drawn again, up to 10 times;
2. a random crop of a random noise entry (a file, looped when shorter than the crop; or a clip
   of a generated noise);
3. an SNR, uniform in ``snr_db = [lo, hi]`` or uniform over the list ``snr_db_choices``;
4. with ``gain_db = [lo, hi]``, a gain uniform in that range: the speech is scaled to an
   *active* level of ``-25 dBFS + gain``; with ``gain_db=None`` (the default) the speech keeps
   the level it was recorded at;
5. the noise is scaled so that 10 log10(active speech level / noise mean square) = SNR, where
   the active speech level is ITU-T P.56 method B (:func:`zoo.data.noises.active_level`: the
   mean square over the samples where speech is active, so pauses in a crop do not raise the
   effective SNR) and the noise level is its plain mean square over the crop;
6. with ``noise_tilt_db = [lo, hi]`` (training mixtures only), before step 5 the noise's power
   spectrum is tilted by a slope uniform in that range, in dB per octave about 1 kHz
   (:func:`zoo.data.noises.tilt_spectrum`); the slope is drawn after everything else, so the
   rest of an item is the same with or without it;
7. if the mixture's peak exceeds 0.99, speech, noise and mixture are scaled down together (the
   SNR is unchanged; the gain is lower than drawn).

Items are ``{"noisy", "clean", "noise": float32 [T], "snr_db": float32 []}``; ``noisy == clean +
noise`` to float precision.

Reproducibility: validation item i is the same mixture every time (seed, index). A training
item depends on (seed, epoch, index) only: the train loader's sampler (:class:`zoo.data.collate.EpochShuffle`)
hands each index to the workers with its epoch, so epochs differ from each other but the whole
run is the same for a given seed, whatever ``num_workers`` or the global torch seed.

Files are opened once at ``setup`` (frames and rate cached, silent files skipped with one
warning that counts them); items read only the samples of their crop and resample only files
whose rate differs from ``sample_rate``.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from ..audio import AudioFileError, open_audio
from .collate import EpochShuffle
from .files import (DataPathError, WholeFiles, audio_files, path_list, read_crop, read_looped, read_whole,
                    resolve_data_path)
from .noises import (BABBLE_SPEECH, BABBLE_TALKERS, GENERATED_NOISES, GENERATED_PREFIX, active_level, babble_noise,
                     brown_noise, level_normalised, magnitude_sum, pink_noise, speech_shaped_noise, tilt_spectrum,
                     white_noise)
from .splits import VAL_NOISE, VAL_SPEECH

log = logging.getLogger(__name__)

#: a file whose RMS level over all its samples is below this is silent and skipped
SILENT_BELOW_DBFS = -70.0
#: speech is scaled to this active level (ITU-T P.56) plus the random gain
REFERENCE_LEVEL_DBFS = -25.0
#: speech crops active less than this share of the time are drawn again (up to MAX_DRAWS times)
MIN_SPEECH_ACTIVITY = 0.2
MAX_DRAWS = 10
PEAK_LIMIT = 0.99
_STREAM_TRAIN, _STREAM_VAL = 0, 1


# ---------------------------------------------------------------------------------------------
# Files: scanned once, read by crop


@dataclass(frozen=True)
class AudioFile:
    """An audio file as the datasets read it: absolute path, length and rate (from one scan)."""

    path: str
    frames: int
    sample_rate: int

    def frames_at(self, sample_rate: int) -> int:
        return self.frames if sample_rate == self.sample_rate else self.frames * sample_rate // self.sample_rate


_SCAN_CACHE: dict[tuple, AudioFile | None] = {}  # (path, size, mtime) -> AudioFile, or None: silent


def _scan_file(path: Path) -> AudioFile | None:
    """Open ``path`` once: its frames and rate, or None if it is silent. Unreadable files raise
    :class:`zoo.audio.AudioFileError` naming the file."""
    try:
        stat = path.stat()
    except OSError:
        stat = None
    key = (str(path), stat.st_size, stat.st_mtime_ns) if stat else None
    if key in _SCAN_CACHE:
        return _SCAN_CACHE[key]
    with open_audio(path) as handle:  # missing, empty, unreadable, 0 frames, truncated WAV: named errors
        frames, rate, channels = handle.frames, handle.samplerate, handle.channels
        floor = frames * channels * 10 ** (SILENT_BELOW_DBFS / 10)  # the least energy of a non-silent file
        energy = 0.0
        try:
            # Fast path: the first second alone usually holds more than the whole file needs.
            while energy < floor:
                block = handle.read(rate, dtype="float32", always_2d=True)
                if not len(block):
                    break
                energy += float(np.einsum("ij,ij->", block, block, dtype=np.float64))
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioFileError(f"{path} is truncated or corrupt ({error}); copy it again or remove it") from error
    entry = AudioFile(str(path), frames, rate) if energy >= floor else None
    if key:
        _SCAN_CACHE[key] = entry
    return entry


def split_generated(entries) -> tuple[list, list[str]]:
    """Split a noise list into file/folder entries and generated-noise names, checking the names."""
    paths, generated = [], []
    for entry in [entries] if isinstance(entries, (str, Path)) else entries:
        if isinstance(entry, str) and entry.startswith(GENERATED_PREFIX):
            name = entry[len(GENERATED_PREFIX):]
            if name not in GENERATED_NOISES:
                raise ValueError(f"unknown generated noise '{entry}'; use one of "
                                 + ", ".join(GENERATED_PREFIX + n for n in GENERATED_NOISES))
            generated.append(name)
        else:
            paths.append(entry)
    return paths, generated


def catalogue(files, role: str, warn: bool = True) -> tuple[list[AudioFile], list[str]]:
    """Scan ``files`` (paths): usable :class:`AudioFile` entries, and the silent files skipped
    (one warning that counts them)."""
    usable, silent = [], []
    for path in files:
        entry = _scan_file(Path(path))
        if entry is None:
            silent.append(str(path))
        else:
            usable.append(entry)
    if silent and warn:
        warnings.warn(f"{role}: skipped {len(silent)} of {len(usable) + len(silent)} files that are silent "
                      f"(RMS level below {SILENT_BELOW_DBFS:g} dBFS), e.g. {silent[0]}", stacklevel=3)
    return usable, silent


def find_audio(entries, root, role: str, max_files: int | None = None) -> list[Path]:
    """Audio files under ``entries`` (files or folders; relative to ``root`` = data_root,
    $ZOO_DATA or ../shared/data; absolute paths as they are), with the role in any error."""
    try:
        found = audio_files(path_list(entries, role), root)
    except FileNotFoundError as error:
        raise DataPathError(f"{role}: {error}") from None
    return [path.resolve() for path in found[:max_files]]


# read_crop, read_whole and read_looped take these scanned files (one implementation, zoo.data.files)
_WholeFiles = WholeFiles


# ---------------------------------------------------------------------------------------------
# Generated noises with per-file caches


_SPECTRA: dict[tuple[str, int], tuple[np.ndarray, int]] = {}  # (path, rate) -> magnitude_sum, per process
_BABBLE: dict[tuple[str, int], np.ndarray] = {}  # (path, rate) -> level-normalised utterance, per process


class GeneratedNoises:
    """Makes ``generated:NAME`` clips for one dataset: speech-shaped noise from its speech files
    (each file's magnitude spectrum computed once), babble from the babble files (each
    utterance read and level-normalised once). :meth:`prepare` does that work up front, in the
    process that sets the DataModule up, so that worker processes inherit it instead of each
    redoing it."""

    def __init__(self, speech: list[AudioFile], babble: list[AudioFile], sample_rate: int,
                 talkers: int = BABBLE_TALKERS):
        self.speech, self.babble, self.sample_rate, self.talkers = speech, babble, sample_rate, talkers

    def prepare(self, names) -> None:
        if "speech-shaped" in names:
            for index in range(len(self.speech)):
                self._spectrum(index)
        if "babble" in names:
            for index in range(len(self.babble)):
                self._babble_wave(index)

    def _spectrum(self, index: int) -> tuple[np.ndarray, int]:
        file = self.speech[index]
        key = (file.path, self.sample_rate)
        if key not in _SPECTRA:
            _SPECTRA[key] = magnitude_sum(read_whole(file, self.sample_rate), self.sample_rate)
        return _SPECTRA[key]

    def _babble_wave(self, index: int) -> np.ndarray:
        file = self.babble[index]
        key = (file.path, self.sample_rate)
        if key not in _BABBLE:
            _BABBLE[key] = level_normalised(read_whole(file, self.sample_rate), self.sample_rate)
        return _BABBLE[key]

    def __call__(self, name: str, frames: int, rng: np.random.Generator) -> np.ndarray:
        rate = self.sample_rate
        if name == "white":
            return white_noise(frames, rng)
        if name == "pink":
            return pink_noise(frames, rng, rate)
        if name == "brown":
            return brown_noise(frames, rng, rate)
        if name == "speech-shaped":
            return speech_shaped_noise(frames, self.speech, rng, sample_rate=rate, spectrum_of=self._spectrum)
        if name == "babble":
            return babble_noise(frames, self.babble, rng, self.talkers, rate, normalised_wave_of=self._babble_wave)
        raise ValueError(f"unknown generated noise '{name}'")


# ---------------------------------------------------------------------------------------------
# The dataset


def _as_files(entries, role: str) -> list:
    """Paths -> AudioFile (scanned); AudioFile and generated names pass through."""
    out = []
    for entry in entries:
        if isinstance(entry, AudioFile) or (isinstance(entry, str) and entry.startswith(GENERATED_PREFIX)):
            out.append(entry)
        else:
            out += catalogue([entry], role)[0]
    return out


class MixtureDataset(Dataset):
    """``length`` mixtures of a speech crop and a noise crop (see the module docstring).

    ``speech``: audio files (paths or :class:`AudioFile`); ``noise``: audio files and/or
    ``"generated:NAME"`` entries, each equally likely. ``fixed=True`` (validation): item i is the
    same mixture every time. Otherwise keys are ``epoch * length + index`` (what
    :class:`zoo.data.collate.EpochShuffle` yields; a plain index is epoch 0). ``gain_db=None`` keeps the speech
    at its recorded level. ``babble``: the speech files of ``generated:babble``.
    """

    def __init__(self, speech, noise, length: int, crop: int, sample_rate: int, snr_db=(-5.0, 20.0),
                 seed: int = 0, fixed: bool = False, *, snr_db_choices=None, gain_db=None, babble=(),
                 babble_talkers: int = BABBLE_TALKERS, noise_tilt_db=None):
        self.speech = _as_files(speech, "speech")
        self.noise = _as_files(noise, "noise")
        if not self.speech or not self.noise:
            raise ValueError(f"a mixture needs speech and noise; got {len(self.speech)} usable speech files and "
                             f"{len(self.noise)} noises")
        self.length, self.crop, self.sample_rate = length, crop, sample_rate
        self.snr_db, self.seed, self.fixed = tuple(snr_db), seed, fixed
        self.snr_db_choices = None if snr_db_choices is None else [float(x) for x in snr_db_choices]
        self.gain_db = None if gain_db is None else tuple(gain_db)
        self.noise_tilt_db = None if noise_tilt_db is None else tuple(noise_tilt_db)
        self.generated = GeneratedNoises(self.speech, _as_files(babble, "babble speech"), sample_rate,
                                         babble_talkers)
        generated = {n[len(GENERATED_PREFIX):] for n in self.noise if isinstance(n, str)}
        if "babble" in generated and not self.generated.babble:
            raise ValueError("generated:babble needs the speech of held-out babble talkers (babble=...); "
                             "none was given")
        self.generated.prepare(generated)
        self._short_noise = _WholeFiles(sample_rate)

    def __len__(self) -> int:
        return self.length

    def rng(self, key) -> np.random.Generator:
        if self.fixed:
            return np.random.default_rng([self.seed, _STREAM_VAL, int(key) % self.length])
        epoch, index = divmod(int(key), self.length)
        return np.random.default_rng([self.seed, _STREAM_TRAIN, epoch, index])

    def speech_crop(self, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """A crop with active speech, and its active level (mean square over active samples)."""
        best = None
        for _ in range(MAX_DRAWS):
            wave = read_crop(self.speech[rng.integers(len(self.speech))], self.crop, self.sample_rate, rng)
            level, activity = active_level(wave, self.sample_rate)
            if best is None or activity > best[2]:
                best = (wave, level, activity)
            if activity >= MIN_SPEECH_ACTIVITY:
                break
        return best[0], best[1]

    def noise_crop(self, rng: np.random.Generator) -> np.ndarray:
        for _ in range(MAX_DRAWS):
            entry = self.noise[rng.integers(len(self.noise))]
            if isinstance(entry, AudioFile):
                wave = read_looped(entry, self.crop, self.sample_rate, rng, self._short_noise)
            else:
                wave = self.generated(entry[len(GENERATED_PREFIX):], self.crop, rng)
            if np.any(wave):  # a digitally silent stretch of a recording: draw again
                break
        return wave

    def draw_snr(self, rng: np.random.Generator) -> float:
        if self.snr_db_choices:
            return self.snr_db_choices[int(rng.integers(len(self.snr_db_choices)))]
        return float(rng.uniform(*self.snr_db))

    def __getitem__(self, key) -> dict:
        rng = self.rng(key)
        clean, level = self.speech_crop(rng)
        noise = self.noise_crop(rng)
        snr = self.draw_snr(rng)
        gain = None if self.gain_db is None else float(rng.uniform(*self.gain_db))
        if self.noise_tilt_db is not None:  # drawn last: without it, the rest of the item is unchanged
            noise = tilt_spectrum(noise, float(rng.uniform(*self.noise_tilt_db)), self.sample_rate)
        return mix(clean, level, noise, snr, gain)


def mix(clean: np.ndarray, level: float, noise: np.ndarray, snr_db: float, gain_db: float | None) -> dict:
    """Scale ``clean`` (active level ``level``) to ``REFERENCE_LEVEL_DBFS + gain_db`` (kept as it
    is when ``gain_db`` is None), the noise to ``snr_db`` below it, and add; limit the peak."""
    clean = clean.astype(np.float64)
    noise = noise.astype(np.float64)
    target = level if gain_db is None or level <= 0 else 10 ** ((REFERENCE_LEVEL_DBFS + gain_db) / 10)
    if level > 0:
        clean *= math.sqrt(target / level)
    else:  # no speech found: the noise gets the level it would have had
        target = 10 ** ((REFERENCE_LEVEL_DBFS + (gain_db or 0.0)) / 10)
    noise_power = float(np.mean(np.square(noise)))
    if noise_power > 0:
        noise *= math.sqrt(target / (noise_power * 10 ** (snr_db / 10)))
    noisy = clean + noise
    peak = float(np.max(np.abs(noisy)))
    if peak > PEAK_LIMIT:  # keep mixtures in range without changing their SNR
        scale = PEAK_LIMIT / peak
        clean, noise, noisy = clean * scale, noise * scale, noisy * scale
    return {"noisy": torch.from_numpy(noisy.astype(np.float32)), "clean": torch.from_numpy(clean.astype(np.float32)),
            "noise": torch.from_numpy(noise.astype(np.float32)), "snr_db": torch.tensor(snr_db, dtype=torch.float32),
            "has_clean": True}


# ---------------------------------------------------------------------------------------------
# DataModules


def check_mixing_args(snr_db, snr_db_choices, gain_db, crop_seconds, batch_size, train_size, val_size,
                      babble_talkers, noise_tilt_db=None) -> None:
    if len(snr_db) != 2 or snr_db[0] > snr_db[1]:
        raise ValueError(f"snr_db must be [low, high] with low <= high, got {list(snr_db)}")
    if snr_db_choices is not None and not len(snr_db_choices):
        raise ValueError("snr_db_choices is empty; give SNRs in dB (e.g. [0, 5, 10]) or leave it out to use snr_db")
    if gain_db is not None and (len(gain_db) != 2 or gain_db[0] > gain_db[1]):
        raise ValueError(f"gain_db must be [low, high] with low <= high (or null), got {list(gain_db)}")
    if noise_tilt_db is not None and (len(noise_tilt_db) != 2 or noise_tilt_db[0] > noise_tilt_db[1]):
        raise ValueError(f"noise_tilt_db must be [low, high] in dB per octave with low <= high (or null), "
                         f"got {list(noise_tilt_db)}")
    if crop_seconds <= 0 or batch_size < 1 or train_size < 1 or val_size < 0 or babble_talkers < 1:
        raise ValueError("crop_seconds, batch_size, train_size and babble_talkers must be positive and "
                         "val_size >= 0")


class MixingDataModule(L.LightningDataModule):
    """What :class:`Mixtures` and :class:`zoo.data.manifest.ManifestDataModule` share: from
    lists of files (and generated noises) to the train and validation loaders. Subclasses
    implement :meth:`file_lists`."""

    #: the schema keys of every batch (zoo.data.batch.BATCH_SCHEMA)
    batch_keys = ("noisy", "clean", "noise", "has_clean", "snr_db")

    def file_lists(self) -> dict[str, list]:
        """``{"speech", "noise", "val_speech", "val_noise", "babble"}``: lists of absolute paths;
        the noise lists may also hold ``"generated:NAME"`` entries."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        name = type(self).__name__
        lists = self.file_lists()
        self.skipped_silent: dict[str, list[str]] = {}
        pools: dict[str, list] = {}
        for key in ("speech", "noise", "val_speech", "val_noise"):
            paths, generated = split_generated(lists[key]) if "noise" in key else (lists[key], [])
            files, self.skipped_silent[key] = catalogue(paths, f"{name} {key}")
            pools[key] = files + [GENERATED_PREFIX + g for g in generated]
            if not pools[key]:
                raise ValueError(f"{name} {key}: no usable audio (every file is silent)")
        babble: list[AudioFile] = []
        if GENERATED_PREFIX + "babble" in pools["noise"] + pools["val_noise"]:
            babble, self.skipped_silent["babble"] = catalogue(lists["babble"], f"{name} babble_speech")
            pools["speech"] = exclude_speakers_of(babble, pools["speech"], pools["val_speech"], name)
        crop = int(round(hp.crop_seconds * hp.sample_rate))
        common = dict(snr_db_choices=hp.snr_db_choices, babble=babble, babble_talkers=hp.babble_talkers)
        # the tilt is a training augmentation: validation mixtures stay comparable between runs
        self.train_set = MixtureDataset(pools["speech"], pools["noise"], hp.train_size, crop, hp.sample_rate,
                                        hp.snr_db, hp.seed, gain_db=hp.gain_db,
                                        noise_tilt_db=hp.noise_tilt_db, **common)
        self.val_set = MixtureDataset(pools["val_speech"], pools["val_noise"], hp.val_size, crop, hp.sample_rate,
                                      hp.snr_db, hp.seed, fixed=True, gain_db=hp.gain_db, **common)

    def train_dataloader(self) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, sampler=EpochShuffle(len(self.train_set), shuffle=False),
                          num_workers=workers, persistent_workers=workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)


def exclude_speakers_of(babble: list[AudioFile], speech: list[AudioFile], val_speech: list[AudioFile],
                        name: str) -> list[AudioFile]:
    """Training speech without the babble talkers' files; babble talkers must not be validation
    speakers (a model would learn to suppress the voices it is validated on)."""
    talkers = {f.path for f in babble}
    overlap = sorted(talkers & {f.path for f in val_speech})
    if overlap:
        raise ValueError(f"{name}: babble_speech overlaps the validation speech ({len(overlap)} files, e.g. "
                         f"{overlap[0]}); babble must come from speakers held out of training and validation")
    kept = [f for f in speech if f.path not in talkers]
    if len(kept) < len(speech):
        log.info("%s: %d babble talkers' files left out of the training speech", name, len(speech) - len(kept))
    if not kept:
        raise ValueError(f"{name}: every training speech file is a babble talker's; choose other babble_speech")
    return kept


class Mixtures(MixingDataModule):
    """Speech folders x noise folders (and generated noises), mixed on the fly; separate lists
    for validation. Batches ``{"noisy", "clean", "noise": [B, T], "snr_db": [B]}``.

    Args:
        speech, val_speech: audio files or folders (searched recursively). Relative paths are
            relative to ``data_root`` (default ``$ZOO_DATA``, else ``../shared/data``); absolute
            paths are used as they are. ``val_speech`` defaults to ``zoo.data.splits.VAL_SPEECH``.
        noise, val_noise: the same, and ``"generated:white"``, ``"generated:pink"``,
            ``"generated:brown"``, ``"generated:speech-shaped"``, ``"generated:babble"``; every
            file and generated noise is equally likely. Noises shorter than the crop are looped.
            ``val_noise`` defaults to ``zoo.data.splits.VAL_NOISE``. Fine-tuning on your own noise
            is ``noise: [/path/to/my_noise]``.
        sample_rate, crop_seconds: of every item.
        snr_db: ``[low, high]``: SNRs drawn uniformly, against the active speech level (P.56).
        snr_db_choices: a list of SNRs drawn with equal probability instead (e.g. ``[0, 5, 10, 15]``).
        gain_db: ``[low, high]``: speech active level ``-25 dBFS + U(low, high)`` (e.g.
            ``[-10, 10]``: -35 to -15 dBFS); null (default) keeps the recorded level.
        noise_tilt_db: ``[low, high]``: tilt each training noise crop's spectrum by a slope drawn
            uniformly in that range, in dB per octave about 1 kHz (``[-6, 0]``: from as recorded to
            6 dB/octave darker), before it is scaled to its SNR
            (:func:`zoo.data.noises.tilt_spectrum`); validation mixtures are not tilted. null
            (default): noises as recorded.
        batch_size, train_size, val_size: items per batch, per training epoch, in validation.
        num_workers: DataLoader worker processes.
        seed: same seed, same batches (training batches differ per epoch).
        max_files: use only the first N files (sorted) of each list (quick runs).
        babble_speech: speech files or folders of ``generated:babble``'s talkers (default
            :data:`zoo.data.noises.BABBLE_SPEECH`), dropped from the training speech.
        babble_talkers: talkers per babble clip.
    """

    def __init__(self, speech: list[str] | str, noise: list[str] | str, val_speech: list[str] | str | None = None,
                 val_noise: list[str] | str | None = None, data_root: str | None = None, sample_rate: int = 16000,
                 crop_seconds: float = 2.0, snr_db: tuple[float, float] = (-5.0, 20.0), batch_size: int = 4,
                 train_size: int = 1000, val_size: int = 64, num_workers: int = 0, seed: int = 0,
                 max_files: int | None = None, snr_db_choices: list[float] | None = None,
                 gain_db: tuple[float, float] | None = None, babble_speech: list[str] | None = None,
                 babble_talkers: int = BABBLE_TALKERS, noise_tilt_db: tuple[float, float] | None = None):
        super().__init__()
        # one folder given as a plain path is a list of one; a recipe placeholder is refused now, not after
        # the model has loaded (save_hyperparameters records the normalised lists)
        speech, noise = path_list(speech, "Mixtures speech"), path_list(noise, "Mixtures noise")
        val_speech, val_noise = path_list(val_speech, "Mixtures val_speech"), path_list(val_noise, "Mixtures val_noise")
        check_mixing_args(snr_db, snr_db_choices, gain_db, crop_seconds, batch_size, train_size, val_size,
                          babble_talkers, noise_tilt_db)
        split_generated(noise)
        split_generated(val_noise or [])
        self.save_hyperparameters()

    def file_lists(self) -> dict[str, list]:
        hp = self.hparams
        name = type(self).__name__
        lists = {}
        for key, default in (("speech", None), ("noise", None), ("val_speech", VAL_SPEECH), ("val_noise", VAL_NOISE)):
            paths, generated = split_generated(getattr(hp, key) or default or [])
            found = find_audio(paths, hp.data_root, f"{name} {key}", hp.max_files) if paths else []
            lists[key] = found + [GENERATED_PREFIX + g for g in generated]
            if not lists[key]:
                raise ValueError(f"{name} {key}: nothing to draw from; give files, folders or generated noises")
        uses_babble = GENERATED_PREFIX + "babble" in lists["noise"] + lists["val_noise"]
        lists["babble"] = (find_audio(hp.babble_speech or BABBLE_SPEECH, hp.data_root, f"{name} babble_speech")
                           if uses_babble else [])
        return lists


__all__ = ["AudioFile", "GeneratedNoises", "MixingDataModule", "MixtureDataset", "Mixtures",
           "REFERENCE_LEVEL_DBFS", "SILENT_BELOW_DBFS", "active_level", "catalogue", "find_audio", "mix",
           "read_crop", "read_looped", "resolve_data_path", "split_generated"]
