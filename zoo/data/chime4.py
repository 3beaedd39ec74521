"""CHiME-4 (Vincent, Watanabe, Barker, Marxer 2016; the CHiME-3 recordings) as a LightningDataModule.

The official layout under ``root`` (the ``CHiME3``/``CHiME4`` folder of the distribution, or its
``data/`` folder itself)::

    data/annotations/{tr05,dt05,et05}_{simu,real}.json       lists of utterance records
    data/audio/16kHz/isolated/{tr05,dt05,et05}_{bus,caf,ped,str}_{simu,real}/
        F01_22GC010A_BUS.CH1.wav ... .CH6.wav                 noisy, one file per microphone
    data/audio/16kHz/isolated_ext/<the same *_simu folders>/
        F01_22GC010A_BUS.CH5.Clean.wav, F01_22GC010A_BUS.CH5.Noise.wav
                                                              the two parts of each simulated file

An utterance's files are named ``{speaker}_{wsj_name}_{ENVIRONMENT}`` from its annotation
record (``speaker``, ``wsj_name``, ``environment``), in the folder of its set and environment;
``isolated_ext`` names follow the official simulation script (``CHiME4_simulate_data.m`` writes
``<name>.CH<c>.Noise.wav`` and ``<name>.CH<c>.Clean.wav``, noisy = clean + noise). Sets: tr05
trains, dt05 validates, et05 tests. Real recordings have no clean reference: ``kind="real"`` is
for test and predict only (batches without "clean").

Several ``channels`` are separate examples (``F01_22GC010A_BUS.CH5``, ``...CH1``), each a
[T] waveform, so batches keep the zoo's [B, T] contract; ``"channel"`` says which microphone.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from .collate import DataLayoutError, Example, FileExamplesDataModule, build_examples, splits_for

ENVIRONMENTS = ("bus", "caf", "ped", "str")
MICROPHONES = range(1, 7)  # CH1..CH6 on the tablet; CH0 (close-talk, real data only) is no far-field channel
SETS = {"train": "tr05", "val": "dt05"}
LAYOUT = ("ROOT/data/annotations/{tr05,dt05,et05}_{simu,real}.json, "
          "ROOT/data/audio/16kHz/isolated/{tr05,dt05,et05}_{bus,caf,ped,str}_{simu,real}/"
          "SPEAKER_WSJNAME_ENV.CH{1..6}.wav "
          "and for simulated data ROOT/data/audio/16kHz/isolated_ext/<same folder>/SPEAKER_WSJNAME_ENV.CH{1..6}."
          "{Clean,Noise}.wav (ROOT may also be the data/ folder itself)")


class Chime4(FileExamplesDataModule):
    """CHiME-4 isolated utterances; batches ``{"noisy": [B, T], "clean": [B, T], "noise": [B, T],
    "lengths": [B], "name", "speaker", "environment", "channel": [...]}`` ("clean" and "noise"
    only for simulated data).

    Args:
        root: the CHiME-4 folder (holding ``data/``) or its ``data/`` folder; relative paths are
            relative to ``$ZOO_DATA``.
        kind: ``"simu"`` (simulated: clean and noise known; fit, validate, test) or ``"real"``
            (recorded: noisy only; test and predict).
        channels: microphones 1..6 (default CH5, the 1-channel track's usual choice); each
            selected channel of an utterance is a separate example.
        environments: subset of ``bus``, ``caf``, ``ped``, ``str``.
        test_split: ``"et05"`` (evaluation set, default) or ``"dt05"``; also used by predict.
        sample_rate: rate of every batch; the 16 kHz files are resampled once into
            ``cache_dir`` when another rate is asked for.
        crop_seconds, val_crop_seconds, batch_size, test_batch_size, num_workers, seed,
        cache_dir: as for :class:`zoo.data.voicebank.VoiceBankDemand`.
    """

    def __init__(self, root: str, kind: Literal["simu", "real"] = "simu", channels: tuple[int, ...] = (5,),
                 environments: tuple[str, ...] = ENVIRONMENTS, test_split: Literal["dt05", "et05"] = "et05",
                 sample_rate: int = 16000, crop_seconds: float | None = 2.0, val_crop_seconds: float | None = None,
                 batch_size: int = 8, test_batch_size: int = 1, num_workers: int = 0, seed: int = 0,
                 cache_dir: str | None = None):
        super().__init__()
        if kind not in ("simu", "real"):
            raise ValueError(f"kind must be 'simu' (simulated) or 'real' (recorded), not {kind!r}")
        if test_split not in ("dt05", "et05"):
            raise ValueError(f"test_split must be 'et05' or 'dt05', not {test_split!r}")
        channels = [channels] if isinstance(channels, int) else list(channels)
        if not channels or any(c not in MICROPHONES for c in channels) or len(set(channels)) < len(channels):
            raise ValueError(f"channels must be distinct microphones among 1..6 (CH5 is the usual single "
                             f"channel; CH0 is the close-talk microphone, not the array), got {channels}")
        unknown = sorted({str(e).lower() for e in environments} - set(ENVIRONMENTS))
        if unknown or not environments:
            raise ValueError(f"environments must be a non-empty subset of {list(ENVIRONMENTS)}, "
                             f"got {list(environments)}")
        self.save_hyperparameters()
        self._init_files()

    # ---- Lightning hooks ------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Check the tree and prepare (resample, index) what the trainer's stage needs."""
        for split in splits_for(self._stage_of_trainer()):
            if not (self.hparams.kind == "real" and split in ("train", "val")):
                self._load(split)

    def setup(self, stage: str | None = None) -> None:
        splits = splits_for(stage)
        if self.hparams.kind == "real" and splits & {"train", "val"}:
            if stage is not None:
                raise ValueError(
                    "CHiME-4 real recordings have no clean reference, so kind='real' cannot "
                    f"{'fit' if stage == 'fit' else stage}: train and validate on kind='simu' (tr05_simu, "
                    "dt05_simu) and use kind='real' to test or predict (its batches hold 'noisy' without 'clean')")
            splits = {"test"}
        for split in sorted(splits):
            self.examples[split] = self._load(split)

    # ---- reading the layout ---------------------------------------------------------------
    def _data_dir(self) -> Path:
        for candidate in (self.root / "data", self.root):
            if (candidate / "audio").is_dir() or (candidate / "annotations").is_dir():
                return candidate
        raise DataLayoutError(f"no CHiME-4 data under {self.root}: neither {self.root / 'data'} nor {self.root} "
                              f"holds audio/ or annotations/. Expected the official layout: {LAYOUT}")

    def _load(self, split: str) -> list[Example]:
        hp = self.hparams
        data = self._data_dir()
        set_name = SETS.get(split, hp.test_split)
        name = f"{set_name}_{hp.kind}"
        environments = [e.lower() for e in hp.environments]
        records = [r for r in _annotations(data / "annotations" / f"{name}.json") if r[2] in environments]
        isolated = data / "audio" / "16kHz" / "isolated"
        extended = data / "audio" / "16kHz" / "isolated_ext"
        for environment in sorted({r[2] for r in records}):
            for top in (isolated, extended) if hp.kind == "simu" else (isolated,):
                folder = top / f"{set_name}_{environment}_{hp.kind}"
                if not folder.is_dir():
                    raise DataLayoutError(f"CHiME-4 folder {folder} is missing, but {name}.json lists "
                                          f"{environment} utterances. Expected the official layout: {LAYOUT}")
        candidates = []
        for speaker, wsj_name, environment in records:
            utterance = f"{speaker}_{wsj_name}_{environment.upper()}"
            folder = f"{set_name}_{environment}_{hp.kind}"
            for channel in hp.channels:
                stem = f"{utterance}.CH{channel}"
                parts = {"noisy": isolated / folder / f"{stem}.wav"}
                if hp.kind == "simu":
                    parts.update(clean=extended / folder / f"{stem}.Clean.wav",
                                 noise=extended / folder / f"{stem}.Noise.wav")
                candidates.append(Example(stem, meta={"speaker": speaker, "environment": environment,
                                                      "channel": channel}, **parts))
        if not candidates:
            raise DataLayoutError(f"{data / 'annotations' / name}.json lists no utterances in the environments "
                                  f"{environments}")
        _check_files(candidates, data, name)
        return build_examples(candidates, hp.sample_rate, self.cache_dir, what=f"CHiME-4 {name}")


def _annotations(path: Path) -> list[tuple[str, str, str]]:
    """(speaker, wsj_name, environment in lower case) of each record, in file order, once each."""
    if not path.is_file():
        raise DataLayoutError(f"CHiME-4 annotation file {path} is missing; it lists the utterances of the set. "
                              f"Expected the official layout: {LAYOUT}")
    try:
        records = json.loads(path.read_text())
    except ValueError as error:
        raise DataLayoutError(f"{path} is not valid JSON ({error}); "
                              "copy it from the CHiME-4 distribution again") from error
    if not isinstance(records, list):
        raise DataLayoutError(f"{path} should hold a JSON list of utterance records, not a {type(records).__name__}")
    found = {}
    for i, record in enumerate(records):
        lacking = [key for key in ("speaker", "wsj_name", "environment")
                   if not isinstance(record, dict) or key not in record]
        if lacking:
            raise DataLayoutError(f"{path}: record {i} lacks {', '.join(lacking)}; each record needs speaker, "
                                  "wsj_name and environment (e.g. F01, 22GC010A, BUS)")
        environment = str(record["environment"]).lower()
        if environment not in ENVIRONMENTS:
            raise DataLayoutError(f"{path}: record {i} has environment {record['environment']!r}; "
                                  f"CHiME-4 environments are {', '.join(e.upper() for e in ENVIRONMENTS)}")
        found.setdefault((str(record["speaker"]), str(record["wsj_name"]), environment), None)
    return list(found)


def _check_files(candidates: list[Example], data: Path, name: str) -> None:
    """Refuse annotated recordings that are missing, and simulated ones without their parts."""
    noisy = [c.noisy for c in candidates if not c.noisy.is_file()]
    if noisy:
        raise DataLayoutError(
            f"{len(noisy)} of the {len(candidates)} recordings listed in annotations/{name}.json are missing "
            f"(e.g. {noisy[0].relative_to(data)}): an incomplete download or copy?")
    parts = [p for c in candidates for p in (c.clean, c.noise) if p is not None and not p.is_file()]
    if parts:
        raise DataLayoutError(
            f"{len(parts)} clean/noise parts of the {len(candidates)} simulated recordings of {name} are missing "
            f"(e.g. {parts[0].relative_to(data)}): each isolated/{name[:4]}_<env>_simu/<name>.CH<c>.wav "
            f"needs <name>.CH<c>.Clean.wav and <name>.CH<c>.Noise.wav in the same folder under isolated_ext/")
