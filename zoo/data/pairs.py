"""Noisy/clean file pairs named by a data spec, for evaluation.

Specs:

- ``voicebank-demand:PATH``: the official layout, ``PATH/noisy_testset_wav`` and
  ``PATH/clean_testset_wav`` (``voicebank-demand:PATH:train`` for the 28-speaker train folders);
- ``folders:NOISY_DIR:CLEAN_DIR``: two folders with the same file names;
- ``manifest:FILE``: a CSV (columns ``noisy,clean``) or JSON list of ``{"noisy", "clean"}``
  objects; relative paths are relative to the manifest's folder.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from .files import AUDIO_SUFFIXES

VOICEBANK_SPLITS = {
    "test": ("noisy_testset_wav", "clean_testset_wav"),
    "train": ("noisy_trainset_28spk_wav", "clean_trainset_28spk_wav"),
    "train56": ("noisy_trainset_56spk_wav", "clean_trainset_56spk_wav"),
}


@dataclass(frozen=True)
class PairedFile:
    name: str
    noisy: Path
    clean: Path


class DataSpecError(ValueError):
    """A data spec that names no usable pairs; the message says which form is expected."""


def paired_files(spec: str) -> list[PairedFile]:
    kind, _, rest = spec.partition(":")
    if not rest:
        raise DataSpecError(f"data spec '{spec}' has no path; use voicebank-demand:PATH, "
                            "folders:NOISY_DIR:CLEAN_DIR or manifest:FILE")
    if kind == "voicebank-demand":
        root, _, split = rest.partition(":")
        if (split or "test") not in VOICEBANK_SPLITS:
            raise DataSpecError(f"unknown VoiceBank-DEMAND split '{split}'; use {', '.join(VOICEBANK_SPLITS)}")
        noisy, clean = VOICEBANK_SPLITS[split or "test"]
        return _folder_pairs(Path(root) / noisy, Path(root) / clean)
    if kind == "folders":
        noisy, _, clean = rest.partition(":")
        if not clean:
            raise DataSpecError("use folders:NOISY_DIR:CLEAN_DIR")
        return _folder_pairs(Path(noisy), Path(clean))
    if kind == "manifest":
        return _manifest_pairs(Path(rest))
    raise DataSpecError(f"unknown data spec kind '{kind}'; use voicebank-demand:PATH, "
                        "folders:NOISY_DIR:CLEAN_DIR or manifest:FILE")


def _folder_pairs(noisy_dir: Path, clean_dir: Path) -> list[PairedFile]:
    for folder in (noisy_dir, clean_dir):
        if not folder.is_dir():
            raise DataSpecError(f"{folder} is not a folder")
    noisy = {p.relative_to(noisy_dir): p for p in noisy_dir.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES}
    clean = {p.relative_to(clean_dir): p for p in clean_dir.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES}
    unmatched = sorted(set(noisy) ^ set(clean))
    if unmatched:
        raise DataSpecError(f"{len(unmatched)} files have no partner in {noisy_dir} / {clean_dir}, "
                            f"e.g. {unmatched[0]}; the two folders must hold the same file names")
    if not noisy:
        raise DataSpecError(f"no audio files in {noisy_dir}")
    return [PairedFile(str(rel), noisy[rel], clean[rel]) for rel in sorted(noisy)]


def _manifest_pairs(path: Path) -> list[PairedFile]:
    if not path.is_file():
        raise DataSpecError(f"manifest {path} does not exist")
    if path.suffix.lower() == ".json":
        rows = json.loads(path.read_text())
    else:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    pairs = []
    for i, row in enumerate(rows):
        if "noisy" not in row or "clean" not in row:
            raise DataSpecError(f"{path}: entry {i} lacks 'noisy' and 'clean' fields")
        noisy, clean = (path.parent / row[key] for key in ("noisy", "clean"))
        for file in (noisy, clean):
            if not file.is_file():
                raise DataSpecError(f"{path}: entry {i} names {file}, which does not exist")
        pairs.append(PairedFile(row.get("name") or noisy.name, noisy, clean))
    if not pairs:
        raise DataSpecError(f"{path} lists no pairs")
    return pairs
