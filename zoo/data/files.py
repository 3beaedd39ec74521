"""Finding audio files and reading random crops of them."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio import AudioFileError, open_audio, resample
from ..paths import PROJECT_ROOT

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif"}

#: Where relative data paths in recipes point: $ZOO_DATA, else the shared data beside the checkout.
DATA_ROOT = Path(os.environ.get("ZOO_DATA", PROJECT_ROOT.parent / "shared" / "data"))


class DataConfigError(ValueError):
    """A data configuration the user must fix (a recipe's placeholder left in, a path that does not
    exist); ``zoo fit`` prints it as one line."""


class DataPathError(FileNotFoundError, DataConfigError):
    """A data path (file or folder) that does not exist or holds no audio."""


#: how recipes mark a value the user must fill in (``noise: [REPLACE_WITH_YOUR_NOISE_FOLDER]``)
PLACEHOLDER = "REPLACE_WITH"


def path_list(entries, role: str, option: str | None = None) -> list:
    """A recipe's list of files or folders: a single path (``--data.init_args.noise /my/noise``)
    counts as a list of one; a recipe placeholder still in it is refused with what to write."""
    if entries is None:
        return entries
    entries = [entries] if isinstance(entries, (str, Path)) else list(entries)
    for entry in entries:
        if PLACEHOLDER in str(entry):
            flag = f"--data.init_args.{option or role.split()[-1]}"
            raise DataConfigError(
                f"{role}: '{entry}' is the recipe's placeholder; give your own files or folders, e.g. "
                f"{flag} /path/to/my_noise (or a list: {flag} '[/path/a, /path/b]')")
    return entries


def resolve_data_path(path, root=None) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else Path(root or DATA_ROOT) / path


def audio_files(paths, root=None) -> list[Path]:
    """Every audio file under the given files or folders (recursively), sorted; clear errors."""
    found: list[Path] = []
    for entry in path_list(paths, "data path"):
        path = resolve_data_path(entry, root)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            hint = ("check the path" if Path(entry).expanduser().is_absolute() else
                    f"relative paths are read under {Path(root or DATA_ROOT)}: give an absolute path, or set "
                    "ZOO_DATA or data_root to the folder that holds it")
            raise DataPathError(f"data path {path} does not exist; {hint}")
    if not found:
        raise DataPathError(f"no audio files (.wav, .flac, ...) under {paths}")
    return found


#: where read_crop puts the zeros when a file is shorter than the crop
CROP_PADDING = ("random", "end")


def _file_info(source) -> tuple[str, int, int]:
    """``(path, frames, sample_rate)`` of a path, or of a scanned file (``zoo.data.mixtures.AudioFile``
    or anything with ``path``, ``frames`` and ``sample_rate``) without opening it again."""
    if all(hasattr(source, name) for name in ("path", "frames", "sample_rate")):
        return str(source.path), int(source.frames), int(source.sample_rate)
    with open_audio(source) as handle:  # missing, empty, unreadable: errors that name the file
        return str(source), handle.frames, handle.samplerate


def _read(path: str, start: int, frames: int) -> np.ndarray:
    """``frames`` samples from ``start``, float32, channels averaged to mono."""
    try:
        data, _ = sf.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioFileError(f"{path} could not be read ({error}); check that it is a complete audio file, "
                             "or remove it from the data") from error
    return data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)


def read_crop(source, frames: int, sample_rate: int, rng: np.random.Generator, *, pad: str = "random") -> np.ndarray:
    """A random crop of ``frames`` samples at ``sample_rate``, float32 mono (channels averaged).

    ``source``: a path or a scanned ``AudioFile``. Only the crop is read (its start uniform over
    the file), and resampled only if the file's rate differs. A file shorter than the crop is
    zero-padded: at a random place (``pad="random"``, one more draw from ``rng``: the training
    mixtures, so that speech is not always at the start) or at the end (``pad="end"``, no draw:
    the fixed held-out set and the classification tasks, which were built that way)."""
    if pad not in CROP_PADDING:
        raise ValueError(f"pad must be one of {', '.join(map(repr, CROP_PADDING))}, got {pad!r}")
    path, total, rate = _file_info(source)
    native = frames if rate == sample_rate else math.ceil(frames * rate / sample_rate)
    start = int(rng.integers(0, max(0, total - native) + 1))
    wave = _read(path, start, native)
    if rate != sample_rate:
        wave = resample(wave, rate, sample_rate)
    wave = wave[:frames]
    if len(wave) < frames:
        before = int(rng.integers(0, frames - len(wave) + 1)) if pad == "random" else 0
        wave = np.pad(wave, (before, frames - len(wave) - before))
    return wave


def read_whole(source, sample_rate: int) -> np.ndarray:
    """All of a file at ``sample_rate``, float32 mono."""
    path, total, rate = _file_info(source)
    wave = _read(path, 0, total)
    return wave if rate == sample_rate else resample(wave, rate, sample_rate)


class WholeFiles:
    """Whole files at the target rate, kept in memory once read (noises shorter than a crop)."""

    def __init__(self, sample_rate: int):
        self.sample_rate, self.cache = sample_rate, {}

    def __call__(self, source) -> np.ndarray:
        key = str(getattr(source, "path", source))
        wave = self.cache.get(key)
        if wave is None:
            wave = self.cache[key] = read_whole(source, self.sample_rate)
        return wave


def read_looped(source, frames: int, sample_rate: int, rng: np.random.Generator, whole: WholeFiles | None = None,
                *, pad: str = "random") -> np.ndarray:
    """A random crop of ``frames`` samples that loops the file when it is shorter than that (scarce
    noise): the whole file from a random offset, wrapped around its end as often as needed.
    ``whole``: a cache of whole files. A file at least ``frames`` long is read as :func:`read_crop`
    does (with ``pad``)."""
    path, total, rate = _file_info(source)
    if (total if rate == sample_rate else total * sample_rate // rate) >= frames:
        return read_crop(source, frames, sample_rate, rng, pad=pad)
    wave = (whole or WholeFiles(sample_rate))(source)
    offset = int(rng.integers(0, len(wave)))
    return wave[(offset + np.arange(frames)) % len(wave)]
