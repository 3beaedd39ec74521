"""Finding audio files and reading random crops of them."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..audio import resample
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


def read_crop(path: Path, frames: int, sample_rate: int, rng: np.random.Generator) -> torch.Tensor:
    """A random mono crop of ``frames`` samples at ``sample_rate`` (zero-padded if the file is short)."""
    info = sf.info(str(path))
    native = int(round(frames * info.samplerate / sample_rate))
    start = int(rng.integers(0, max(1, info.frames - native + 1)))
    data, rate = sf.read(str(path), start=start, frames=native, dtype="float32", always_2d=True)
    wave = resample(torch.from_numpy(data.mean(axis=1)), rate, sample_rate)
    if wave.shape[-1] < frames:
        wave = torch.nn.functional.pad(wave, (0, frames - wave.shape[-1]))
    return wave[:frames]


def read_looped(path: Path, frames: int, sample_rate: int, rng: np.random.Generator) -> torch.Tensor:
    """A random crop that loops the file when it is shorter than ``frames`` (for scarce noise)."""
    wave = read_crop(path, frames, sample_rate, rng)
    info = sf.info(str(path))
    native_length = int(info.frames * sample_rate / info.samplerate)
    if native_length < frames:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        whole = resample(torch.from_numpy(data.mean(axis=1)), rate, sample_rate)
        repeats = -(-frames // whole.shape[-1]) + 1
        offset = int(rng.integers(0, whole.shape[-1]))
        wave = whole.repeat(repeats)[offset:offset + frames]
    return wave
