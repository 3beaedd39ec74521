"""VoiceBank-DEMAND (Valentini-Botinhao et al., SSW 2016) as a LightningDataModule.

The official layout, as unpacked from the University of Edinburgh DataShare archives
(https://doi.org/10.7488/ds/2117) into one folder ``root``::

    root/clean_trainset_28spk_wav/p226_001.wav ...   noisy_trainset_28spk_wav/   (train_set="28spk")
    root/clean_trainset_56spk_wav/ ...               noisy_trainset_56spk_wav/   (train_set="56spk")
    root/clean_testset_wav/p232_001.wav ...          noisy_testset_wav/          (test, predict)

A root with only the test folders (like ``../shared/data/voicebank-demand-subset``) can test
and predict; fitting it says which folders are missing. The published files are 48 kHz: they
are resampled once to ``sample_rate`` into ``cache_dir`` and read from there (files already at
``sample_rate`` are read where they are). Validation holds out whole speakers of the training
folders, never single utterances of a training speaker.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from .collate import DataLayoutError, Example, FileExamplesDataModule, build_examples, splits_for
from .pairs import VOICEBANK_SPLITS

#: (noisy folder, clean folder) of each part of the official layout
FOLDERS = {"28spk": VOICEBANK_SPLITS["train"], "56spk": VOICEBANK_SPLITS["train56"], "test": VOICEBANK_SPLITS["test"]}
SPEAKER_NAME = re.compile(r"^(?P<speaker>[A-Za-z]*\d+)_\w+$")  # p226_001 -> p226
LAYOUT = ("clean_testset_wav/ + noisy_testset_wav/ (test, predict) and clean_trainset_28spk_wav/ + "
          "noisy_trainset_28spk_wav/ (fit; *_56spk_wav with train_set='56spk'), each holding "
          "pSPEAKER_NNN.wav files, as unpacked from the official DataShare archives (https://doi.org/10.7488/ds/2117)")


class VoiceBankDemand(FileExamplesDataModule):
    """VoiceBank-DEMAND noisy/clean pairs; batches ``{"noisy", "clean": [B, T], "lengths": [B],
    "name": [...], "speaker": [...]}``.

    Args:
        root: folder holding the official ``*_wav`` folders; relative paths are relative to
            ``$ZOO_DATA`` (default ``../shared/data``).
        train_set: ``"28spk"`` or ``"56spk"``: which official training set fit uses.
        sample_rate: rate of every batch; other rates are resampled once into ``cache_dir``.
        crop_seconds: length of the random training crops (shorter files are zero-padded), or
            None for whole files (the feature-loss paper's recipe, with ``batch_size=1``).
        val_speakers: training speakers held out for validation: a list of ids (``["p226",
            "p287"]``) or a number of speakers, chosen evenly spaced in sorted order (not by seed).
        val_crop_seconds: validation crop length (fixed crops, the same every epoch), or None for
            whole files zero-padded into batches.
        batch_size: training and validation batch size.
        test_batch_size: test and predict batch size; 1 (default) yields whole files unpadded.
        num_workers: DataLoader worker processes.
        seed: random crops and shuffling; the same seed gives the same batches.
        cache_dir: where resampled copies and the file index go (default ``~/.cache/zoo/resampled``).
    """

    def __init__(self, root: str, train_set: Literal["28spk", "56spk"] = "28spk", sample_rate: int = 16000,
                 crop_seconds: float | None = 2.0, val_speakers: list[str] | int = 2,
                 val_crop_seconds: float | None = None, batch_size: int = 8, test_batch_size: int = 1,
                 num_workers: int = 0, seed: int = 0, cache_dir: str | None = None):
        super().__init__()
        if train_set not in ("28spk", "56spk"):
            raise ValueError(f"train_set must be '28spk' or '56spk', not {train_set!r}")
        self.save_hyperparameters()
        self._init_files()

    # ---- Lightning hooks ------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Resample (once) what the trainer's stage needs; parts the root does not have are left
        to ``setup`` to report."""
        for split in splits_for(self._stage_of_trainer()):
            try:
                self._load(split)
            except DataLayoutError:
                pass

    def setup(self, stage: str | None = None) -> None:
        for split in sorted(splits_for(stage)):
            self.examples[split] = self._load(split)

    # ---- reading the layout ---------------------------------------------------------------
    def _load(self, split: str) -> list[Example]:
        part = "test" if split == "test" else self.hparams.train_set
        noisy_dir, clean_dir = (self.root / folder for folder in FOLDERS[part])
        self._check_folders(part, noisy_dir, clean_dir)
        names = _paired_names(noisy_dir, clean_dir)
        if part != "test":
            val = self._val_speakers(sorted({_speaker(name, noisy_dir) for name in names}))
            names = [n for n in names if (_speaker(n, noisy_dir) in val) == (split == "val")]
        candidates = [Example(Path(name).stem, noisy=noisy_dir / name, clean=clean_dir / name,
                              meta={"speaker": _speaker(name, noisy_dir, strict=part != "test")})
                      for name in names]
        return build_examples(candidates, self.hparams.sample_rate, self.cache_dir,
                              what=f"VoiceBank-DEMAND {split} ({noisy_dir.name})")

    def _check_folders(self, part: str, noisy_dir: Path, clean_dir: Path) -> None:
        if not self.root.is_dir():
            raise DataLayoutError(f"VoiceBank-DEMAND root {self.root} is not a folder. Expected under it: {LAYOUT}")
        missing = [folder.name for folder in (clean_dir, noisy_dir) if not folder.is_dir()]
        if not missing:
            return
        has_test = all((self.root / f).is_dir() for f in FOLDERS["test"])
        if part != "test" and has_test:
            raise DataLayoutError(
                f"VoiceBank-DEMAND under {self.root} has only the test folders, no {' or '.join(missing)}: "
                f"it can test and predict but not fit or validate. Put the official {part} training set "
                f"there ({clean_dir.name}/ and {noisy_dir.name}/), or point root at a folder that has it")
        raise DataLayoutError(f"VoiceBank-DEMAND folder {' and '.join(missing)} missing under {self.root}. "
                              f"Expected: {LAYOUT}")

    def _val_speakers(self, speakers: list[str]) -> set[str]:
        wanted = self.hparams.val_speakers
        if isinstance(wanted, int) and not isinstance(wanted, bool):
            if not 1 <= wanted < len(speakers):
                raise ValueError(f"val_speakers={wanted}: choose between 1 and {len(speakers) - 1} of the "
                                 f"{len(speakers)} training speakers (or list their ids)")
            return {speakers[int((i + 0.5) * len(speakers) / wanted)] for i in range(wanted)}
        wanted = {str(s) for s in wanted}
        unknown = sorted(wanted - set(speakers))
        if unknown:
            raise ValueError(f"val_speakers {unknown} are not in the training set; its speakers are "
                             f"{', '.join(speakers)}")
        if not wanted or wanted >= set(speakers):
            raise ValueError(f"val_speakers must hold out at least one and not all of the {len(speakers)} "
                             "training speakers")
        return wanted


def _wav_names(folder: Path) -> set[str]:
    # hidden files (macOS "._p226_001.wav" resource forks) are not audio
    return {p.name for p in folder.iterdir() if p.suffix.lower() == ".wav" and not p.name.startswith(".")}


def _paired_names(noisy_dir: Path, clean_dir: Path) -> list[str]:
    noisy, clean = _wav_names(noisy_dir), _wav_names(clean_dir)
    problems = []
    for have, lack, have_dir, lack_dir in ((noisy, clean, noisy_dir, clean_dir), (clean, noisy, clean_dir, noisy_dir)):
        orphans = sorted(have - lack)
        if orphans:
            problems.append(f"{len(orphans)} of {len(have)} files in {have_dir.name}/ have no partner in "
                            f"{lack_dir.name}/ (e.g. {orphans[0]})")
    if problems:
        raise DataLayoutError(f"VoiceBank-DEMAND pairs do not match under {noisy_dir.parent}: {'; '.join(problems)}. "
                              "Both folders must hold the same file names: an incomplete download or copy?")
    if not noisy:
        raise DataLayoutError(f"no .wav files in {noisy_dir} and {clean_dir}")
    return sorted(noisy)


def _speaker(name: str, folder: Path, strict: bool = True) -> str:
    match = SPEAKER_NAME.match(Path(name).stem)
    if not match and not strict:  # test files only carry the speaker as metadata
        return Path(name).stem.split("_")[0]
    if not match:
        raise DataLayoutError(f"cannot tell the speaker of {folder / name}: VoiceBank-DEMAND files are named "
                              "pSPEAKER_NNN.wav (e.g. p226_001.wav), and validation holds out whole speakers")
    return match["speaker"]
