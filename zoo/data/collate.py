"""Batches of examples that are audio files on disk, and what the file-based DataModules share.

``zoo.data.voicebank`` and ``zoo.data.chime4`` list their examples (a noisy file, its clean
reference and noise component when the data set has them, and some metadata); everything after
that is here and the same for both:

- :func:`prepare_audio`: each file at the DataModule's sample rate. Files already at that rate
  are used where they are; others are resampled ONCE into a cache folder (keyed by source path,
  size, modification time and target rate; written atomically) and read from there afterwards.
  Per-file facts (frames, level) are kept in an ``index.json`` beside the copies, so a second run
  opens no audio at all.
- :func:`build_examples`: pairs of different lengths are trimmed to the shorter (one warning
  with the count); examples whose reference is silent are skipped (one warning with the count).
- :class:`ExampleDataset` + :class:`EpochShuffle`: random crops that depend only on
  (seed, epoch, example), not on worker processes; whole files for testing.
- :func:`pad_collate`: dict batches ``{"noisy": [B, T], "clean": [B, T], "noise": [B, T],
  "lengths": [B], "has_clean": bool [B], ...}`` zero-padded to the longest row, metadata as lists.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from ..audio import AudioError, atomic_output, check_sample_rate, open_audio, resample
from .files import resolve_data_path

#: A reference (clean speech; the noisy recording when there is no clean one) whose RMS level
#: is below this is treated as silent and its example skipped: an empty or failed recording.
SILENT_BELOW_DBFS = -70.0
WAVE_KEYS = ("noisy", "clean", "noise")
INDEX_VERSION = 1


class DataLayoutError(ValueError):
    """A data set folder without the expected layout; the message says what is missing and where."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/zoo/resampled`` (``~/.cache/zoo/resampled``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "zoo" / "resampled"


# ---------------------------------------------------------------------------------------------
# Files at the target rate, resampled once


@dataclass(frozen=True)
class AudioEntry:
    """A file as the datasets read it: ``path`` is at the target rate (the source or its copy)."""

    path: Path
    frames: int
    level_dbfs: float | None  # RMS level over the whole file; None when it was not measured


def _level_dbfs(wave: np.ndarray) -> float:
    return float(10 * math.log10(float(np.mean(np.square(wave, dtype=np.float64))) + 1e-20))


def _read_whole(path: Path) -> tuple[np.ndarray, int]:
    """[C, T] float32 and rate. numpy, not torch: on a busy machine torch's threads make
    thousands of small reductions slow. Clipping is not warned about here (data sets are what
    they are); NaN or infinite samples are refused."""
    with open_audio(path) as handle:  # AudioFileError names the file and what is wrong with it
        data = handle.read(dtype="float32", always_2d=True)
        rate = handle.samplerate
    if not np.isfinite(data).all():
        raise AudioError(f"{path} contains {int((~np.isfinite(data)).sum())} NaN or infinite samples; "
                         "repair or remove it (e.g. numpy.nan_to_num) before using the data set")
    return np.ascontiguousarray(data.T), rate


def _folder_cache(cache_dir: Path, folder: Path, sample_rate: int) -> Path:
    digest = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:10]
    return cache_dir / f"{sample_rate}Hz" / f"{folder.name}-{digest}"


def _load_index(path: Path, sample_rate: int) -> dict:
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if index.get("version") != INDEX_VERSION or index.get("sample_rate") != sample_rate:
        return {}
    return index.get("files", {})


def prepare_audio(sources, sample_rate: int, cache_dir, measure=(), desc: str = "audio") -> dict[Path, AudioEntry]:
    """Every source file at ``sample_rate``, with its length and (for ``measure`` files) level.

    Files at another rate are resampled (band-limited sinc, ``zoo.audio.resample``) into
    ``cache_dir/<rate>Hz/<folder>-<hash of its path>/<stem>.<hash of path, size, mtime, rate>.wav``
    (PCM_16, or FLOAT where resampling overshoots full scale) through a temporary name, so an
    interrupted run leaves no half-written copy. A source that changes gets a new copy. Missing,
    empty, truncated or unreadable files raise :class:`zoo.audio.AudioFileError` naming the file.
    """
    cache_dir = Path(cache_dir)
    measure = {Path(p) for p in measure}
    by_folder: dict[Path, list[Path]] = defaultdict(list)
    for source in sources:
        by_folder[Path(source).parent].append(Path(source))
    entries: dict[Path, AudioEntry] = {}
    for folder, files in by_folder.items():
        entries.update(_prepare_folder(folder, files, sample_rate, cache_dir, measure, desc))
    return entries


def _prepare_folder(folder, files, sample_rate, cache_dir, measure, desc) -> dict[Path, AudioEntry]:
    cache = _folder_cache(cache_dir, folder, sample_rate)
    index_path = cache / "index.json"
    index = _load_index(index_path, sample_rate)
    changed = 0
    out = {}
    todo = []
    for path in files:
        if not path.is_file():
            open_audio(path)  # raises AudioFileError: no such file / a folder
        stat = path.stat()
        known = index.get(path.name)
        if (known and known["size"] == stat.st_size and known["mtime_ns"] == stat.st_mtime_ns
                and (known["cached"] is None or (cache / known["cached"]).is_file())
                and (path not in measure or known["level_dbfs"] is not None)):
            target = cache / known["cached"] if known["cached"] else path
            out[path] = AudioEntry(target, known["frames"], known["level_dbfs"])
        else:
            todo.append((path, stat, known))
    if todo:
        cache.mkdir(parents=True, exist_ok=True)
    for path, stat, known in tqdm(todo, desc=f"{desc}: {folder.name} at {sample_rate} Hz", unit="file",
                                  disable=len(todo) < 200):
        with open_audio(path) as handle:
            rate, frames = handle.samplerate, handle.frames
        record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "source_rate": rate,
                  "cached": None, "frames": frames, "level_dbfs": None}
        if rate == sample_rate:
            if path in measure:
                wave, _ = _read_whole(path)
                record["level_dbfs"] = _level_dbfs(wave)
            out[path] = AudioEntry(path, frames, record["level_dbfs"])
        else:
            key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{sample_rate}".encode())
            name = f"{path.stem}.{key.hexdigest()[:12]}.wav"
            if (cache / name).is_file():  # written by a run that stopped before its index was saved
                wave, _ = _read_whole(cache / name)
            else:
                wave, _ = _read_whole(path)
                wave = resample(torch.from_numpy(wave), rate, sample_rate).numpy()
                subtype = "PCM_16" if float(np.abs(wave).max()) < 1.0 else "FLOAT"
                with atomic_output(cache / name) as temporary:
                    sf.write(temporary, wave.T, sample_rate, subtype=subtype, format="WAV")
            if known and known.get("cached") and known["cached"] != name:  # the source changed
                (cache / known["cached"]).unlink(missing_ok=True)
            record.update(cached=name, frames=int(wave.shape[-1]), level_dbfs=_level_dbfs(wave))
            out[path] = AudioEntry(cache / name, record["frames"], record["level_dbfs"])
        index[path.name] = record
        changed += 1
        if changed % 1000 == 0:  # a long first run that is stopped keeps most of its work
            _save_index(index_path, index, sample_rate, folder)
    if changed:
        _save_index(index_path, index, sample_rate, folder)
    return out


def _save_index(path: Path, files: dict, sample_rate: int, folder: Path) -> None:
    with atomic_output(path) as temporary:
        Path(temporary).write_text(json.dumps({"version": INDEX_VERSION, "sample_rate": sample_rate,
                                               "source_folder": str(folder.resolve()), "files": files}, indent=0))


# ---------------------------------------------------------------------------------------------
# Examples


@dataclass(frozen=True)
class Example:
    """One example: files at the target rate, valid ``frames`` (the shortest of them) and metadata."""

    name: str
    noisy: Path
    clean: Path | None = None
    noise: Path | None = None
    frames: int = 0
    meta: dict = field(default_factory=dict)


def build_examples(candidates: list[Example], sample_rate: int, cache_dir, what: str) -> list[Example]:
    """Prepare every file of ``candidates`` (paths at their source) and return usable examples.

    - files of one example with different lengths: trimmed to the shortest, one warning with
      the count and an example;
    - examples whose reference (clean, else noisy) is below ``SILENT_BELOW_DBFS``: skipped, one
      warning with the count and an example;
    - unreadable files: :class:`zoo.audio.AudioFileError` naming the file.
    """
    references = [c.clean or c.noisy for c in candidates]
    paths = [p for c in candidates for p in (c.noisy, c.clean, c.noise) if p is not None]
    entries = prepare_audio(paths, sample_rate, cache_dir, measure=references, desc=what)
    examples, uneven, silent = [], [], []
    for candidate, reference in zip(candidates, references):
        parts = {key: entries[getattr(candidate, key)] for key in WAVE_KEYS if getattr(candidate, key) is not None}
        lengths = {key: entry.frames for key, entry in parts.items()}
        if len(set(lengths.values())) > 1:
            uneven.append((candidate.name, lengths))
        if entries[reference].level_dbfs < SILENT_BELOW_DBFS:
            silent.append(candidate.name)
            continue
        examples.append(Example(candidate.name, frames=min(lengths.values()), meta=candidate.meta,
                                **{key: entry.path for key, entry in parts.items()}))
    if uneven:
        name, lengths = uneven[0]
        detail = ", ".join(f"{key} {frames / sample_rate:.3f} s" for key, frames in lengths.items())
        warnings.warn(f"{what}: {len(uneven)} of {len(candidates)} examples have files of different lengths "
                      f"(e.g. {name}: {detail}); each was trimmed to its shortest file", stacklevel=3)
    if silent:
        kind = "clean speech" if candidates[0].clean is not None else "recording"
        warnings.warn(f"{what}: skipped {len(silent)} of {len(candidates)} examples whose {kind} is silent "
                      f"(RMS level below {SILENT_BELOW_DBFS:g} dBFS), e.g. {silent[0]}", stacklevel=3)
    if not examples:
        raise DataLayoutError(f"{what}: none of the {len(candidates)} examples is usable (all silent)")
    return examples


# ---------------------------------------------------------------------------------------------
# Reading, sampling, batching


def _read_mono(path: Path, start: int, frames: int) -> torch.Tensor:
    data, _ = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    wave = torch.from_numpy(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])
    if wave.shape[0] < frames:  # a file shorter than its index says (changed since): pad, never crash
        wave = torch.nn.functional.pad(wave, (0, frames - wave.shape[0]))
    return wave


class ExampleDataset(Dataset):
    """Examples read from disk as mono [T] tensors (several channels are averaged).

    ``crop_frames=None``: whole examples. Otherwise a crop of ``crop_frames`` at a random offset
    (zero-padded when the example is shorter; ``"length"`` says how much is real), the same
    offset for the noisy, clean and noise files. The offset depends on (seed, epoch, index) only:
    a key ``epoch * len(self) + index`` (what :class:`EpochShuffle` yields) selects the epoch; a
    plain index is epoch 0, so validation crops are the same every time.
    """

    def __init__(self, examples: list[Example], crop_frames: int | None = None, seed: int = 0):
        self.examples, self.crop_frames, self.seed = list(examples), crop_frames, seed

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, key: int) -> dict:
        epoch, index = divmod(int(key), len(self.examples))
        example = self.examples[index]
        if self.crop_frames is None:
            start, frames = 0, example.frames
        else:
            rng = np.random.default_rng([self.seed, epoch, index])
            start = int(rng.integers(0, max(0, example.frames - self.crop_frames) + 1))
            frames = min(self.crop_frames, example.frames)
        item = {"name": example.name, **example.meta}
        for part in WAVE_KEYS:
            path = getattr(example, part)
            if path is not None:
                wave = _read_mono(path, start, frames)
                if self.crop_frames is not None and frames < self.crop_frames:
                    wave = torch.nn.functional.pad(wave, (0, self.crop_frames - frames))
                item[part] = wave
        item["length"] = frames
        return item


class EpochShuffle(Sampler[int]):
    """Yields ``epoch * n + index`` for every index, in a new order each epoch reproducible from
    ``seed`` (``shuffle=False``: in order, for datasets whose items are random draws already).

    Lightning calls ``set_epoch`` at the start of every epoch; without it (plain loops) each new
    iteration moves on to the next epoch by itself. Because the epoch travels with the index,
    random crops and mixtures do not depend on the number of worker processes or which one
    reads them.
    """

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True):
        self.size, self.seed, self.shuffle, self.epoch = size, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = np.random.default_rng([self.seed, epoch]).permutation(self.size) if self.shuffle else np.arange(self.size)
        return iter((epoch * self.size + order).tolist())


def pad_collate(items: list[dict]) -> dict:
    """Stack items into a batch: waveforms zero-padded to the longest row, ``"lengths"`` [B]
    (valid samples per row), every other field (names, speakers ...) as a list."""
    batch: dict = {}
    for key in WAVE_KEYS:
        if any(key in item for item in items):
            # a row without the part (a real recording has no clean speech) gets the schema's zero
            # placeholder; has_clean says which rows are truth
            waves = [item[key] if key in item else torch.zeros_like(item["noisy"]) for item in items]
            longest = max(w.shape[-1] for w in waves)
            batch[key] = torch.stack([torch.nn.functional.pad(w, (0, longest - w.shape[-1])) for w in waves])
    batch["lengths"] = torch.tensor([item["length"] for item in items], dtype=torch.long)
    # the batch schema's flag: whether a row's "clean" is its truth (CHiME-4's real recordings have none)
    batch["has_clean"] = torch.tensor([item.get("clean") is not None for item in items], dtype=torch.bool)
    for key in items[0]:
        if key not in batch and key != "length":
            batch[key] = [item[key] for item in items]
    return batch


class FileExamplesDataModule(L.LightningDataModule):
    """Loaders shared by the file-based DataModules; subclasses fill ``self.examples[split]``.

    Splits: ``train`` (random crops of ``crop_seconds``, reshuffled and re-cropped every epoch,
    reproducible from ``seed``), ``val`` (fixed crops of ``val_crop_seconds``, or whole files
    zero-padded into batches when it is None), ``test`` and ``predict`` (whole files,
    ``test_batch_size`` per batch, 1 by default so that nothing is padded).
    """

    def __init__(self):
        super().__init__()
        self.examples: dict[str, list[Example]] = {}

    @property
    def batch_keys(self) -> tuple[str, ...]:
        """The schema keys every training batch holds (``zoo.data.batch``): "clean" and "noise" only
        when every training example has them (CHiME-4's real recordings have no clean speech)."""
        train = self.examples.get("train", [])
        parts = tuple(key for key in ("clean", "noise") if train and all(getattr(e, key) is not None for e in train))
        return ("noisy", *parts, "has_clean", "lengths")

    def _init_files(self) -> None:
        """The end of every subclass's ``__init__``, after ``save_hyperparameters()``: check the
        arguments all file-backed modules share and resolve ``root`` and ``cache_dir``."""
        hp = self.hparams
        check_sample_rate(hp.sample_rate)
        self._check_loader_args(hp.crop_seconds, hp.val_crop_seconds, hp.batch_size, hp.test_batch_size,
                                hp.num_workers)
        self.root = resolve_data_path(hp.root)
        self.cache_dir = Path(hp.cache_dir).expanduser() if hp.cache_dir else default_cache_dir()

    @staticmethod
    def _check_loader_args(crop_seconds, val_crop_seconds, batch_size, test_batch_size, num_workers) -> None:
        if any(s is not None and not s > 0 for s in (crop_seconds, val_crop_seconds)):
            raise ValueError(f"crop_seconds ({crop_seconds}) and val_crop_seconds ({val_crop_seconds}) must be "
                             "positive, or None for whole files")
        if batch_size < 1 or test_batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size ({batch_size}) and test_batch_size ({test_batch_size}) must be at least 1, "
                             f"num_workers ({num_workers}) at least 0")

    def _split(self, split: str, stage: str) -> list[Example]:
        if split not in self.examples:
            raise RuntimeError(f"{type(self).__name__}: call setup('{stage}') before asking for the {split} loader")
        return self.examples[split]

    def _loader(self, dataset: Dataset, batch_size: int, sampler=None) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=pad_collate,
                          num_workers=workers, persistent_workers=workers > 0)

    def _frames(self, seconds: float | None) -> int | None:
        return None if seconds is None else max(1, int(round(seconds * self.hparams.sample_rate)))

    def train_dataloader(self) -> DataLoader:
        examples = self._split("train", "fit")
        dataset = ExampleDataset(examples, self._frames(self.hparams.crop_seconds), self.hparams.seed)
        return self._loader(dataset, self.hparams.batch_size, EpochShuffle(len(examples), self.hparams.seed))

    def val_dataloader(self) -> DataLoader:
        dataset = ExampleDataset(self._split("val", "fit"), self._frames(self.hparams.val_crop_seconds),
                                 self.hparams.seed + 1)
        return self._loader(dataset, self.hparams.batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(ExampleDataset(self._split("test", "test")), self.hparams.test_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(ExampleDataset(self._split("test", "predict")), self.hparams.test_batch_size)

    def _stage_of_trainer(self) -> str | None:
        """The stage a trainer is running (``prepare_data`` is not told), or None outside one."""
        trainer = getattr(self, "trainer", None)
        fn = getattr(getattr(trainer, "state", None), "fn", None)
        return getattr(fn, "value", None)


def splits_for(stage: str | None) -> set[str]:
    """Which splits a Lightning stage needs (None: all)."""
    return {"fit": {"train", "val"}, "validate": {"val"}, "test": {"test"},
            "predict": {"test"}}.get(stage, {"train", "val", "test"})
