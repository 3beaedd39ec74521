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
With ``stack_channels=True`` they are one example per utterance instead, for models that take
several microphones at once (``input_channels``): ``"noisy"`` [K, T] (the channels in the order
asked for), and ``"clean"`` / ``"noise"`` [T] of the ``reference_channel`` (CH5 by default, the
reference microphone of the CHiME-4 baseline). CHiME-4 practice leaves out CH2, the microphone on
the back of the tablet that faces away from the speaker: ``channels=[1, 3, 4, 5, 6]``.
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

from .collate import DataLayoutError, Example, ExampleDataset, FileExamplesDataModule, build_examples, splits_for

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
    "lengths": [B], "has_clean": [B], "name", "speaker", "environment", "channel": [...]}`` ("clean"
    and "noise" only for simulated data); ``"noisy"`` is [B, K, T] with ``stack_channels``.

    Args:
        root: the CHiME-4 folder (holding ``data/``) or its ``data/`` folder; relative paths are
            relative to ``$ZOO_DATA``.
        kind: ``"simu"`` (simulated: clean and noise known; fit, validate, test) or ``"real"``
            (recorded: noisy only; test and predict).
        channels: microphones 1..6 (default CH5, the 1-channel track's usual choice); each
            selected channel of an utterance is a separate example, unless ``stack_channels``.
        stack_channels: one example per utterance whose ``"noisy"`` stacks the ``channels`` [K, T]
            (at least two), for a model with ``input_channels`` = K. ``[1, 3, 4, 5, 6]`` leaves out
            CH2 (it faces away from the speaker), as CHiME-4 systems usually do.
        reference_channel: with ``stack_channels``, the microphone whose clean speech and noise
            are the example's ``"clean"`` and ``"noise"`` (default CH5, the baseline's reference).
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
                 cache_dir: str | None = None, stack_channels: bool = False, reference_channel: int = 5):
        super().__init__()
        if kind not in ("simu", "real"):
            raise ValueError(f"kind must be 'simu' (simulated) or 'real' (recorded), not {kind!r}")
        if test_split not in ("dt05", "et05"):
            raise ValueError(f"test_split must be 'et05' or 'dt05', not {test_split!r}")
        channels = [channels] if isinstance(channels, int) else list(channels)
        if not channels or any(c not in MICROPHONES for c in channels) or len(set(channels)) < len(channels):
            raise ValueError(f"channels must be distinct microphones among 1..6 (CH5 is the usual single "
                             f"channel; CH0 is the close-talk microphone, not the array), got {channels}")
        if stack_channels and len(channels) < 2:
            raise ValueError(f"stack_channels stacks several microphones into one example, got channels={channels}: "
                             "give two or more (e.g. [1, 3, 4, 5, 6], all but CH2), or stack_channels=False")
        if reference_channel not in MICROPHONES:
            raise ValueError(f"reference_channel must be a microphone among 1..6 (CH5 is the CHiME-4 baseline's), "
                             f"got {reference_channel}")
        unknown = sorted({str(e).lower() for e in environments} - set(ENVIRONMENTS))
        if unknown or not environments:
            raise ValueError(f"environments must be a non-empty subset of {list(ENVIRONMENTS)}, "
                             f"got {list(environments)}")
        self.save_hyperparameters()
        self._init_files()
        #: with stack_channels: each utterance's microphone files, in the order of ``channels``
        self.microphones: dict[str, list[Path]] = {}

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
        # stacked: every microphone asked for, and the reference's clean speech and noise
        wanted = sorted(set(hp.channels) | {hp.reference_channel}) if hp.stack_channels else hp.channels
        for speaker, wsj_name, environment in records:
            utterance = f"{speaker}_{wsj_name}_{environment.upper()}"
            folder = f"{set_name}_{environment}_{hp.kind}"
            for channel in wanted:
                stem = f"{utterance}.CH{channel}"
                parts = {"noisy": isolated / folder / f"{stem}.wav"}
                if hp.kind == "simu" and (not hp.stack_channels or channel == hp.reference_channel):
                    parts.update(clean=extended / folder / f"{stem}.Clean.wav",
                                 noise=extended / folder / f"{stem}.Noise.wav")
                candidates.append(Example(stem, meta={"speaker": speaker, "environment": environment,
                                                      "channel": channel}, **parts))
        if not candidates:
            raise DataLayoutError(f"{data / 'annotations' / name}.json lists no utterances in the environments "
                                  f"{environments}")
        _check_files(candidates, data, name)
        examples = build_examples(candidates, hp.sample_rate, self.cache_dir, what=f"CHiME-4 {name}")
        return self._stacked(examples, f"CHiME-4 {name}") if hp.stack_channels else examples

    def _stacked(self, examples: list[Example], what: str) -> list[Example]:
        """One example per utterance (the reference microphone's, cut to the shortest microphone),
        its microphones' files in ``self.microphones``; utterances missing a usable one are skipped."""
        hp = self.hparams
        by_utterance: dict[str, dict[int, Example]] = {}
        for example in examples:
            by_utterance.setdefault(example.name.rsplit(".CH", 1)[0], {})[example.meta["channel"]] = example
        stacked, incomplete = [], []
        for utterance, found in by_utterance.items():
            if not set(hp.channels) | {hp.reference_channel} <= set(found):
                incomplete.append(utterance)
                continue
            reference = found[hp.reference_channel]
            self.microphones[utterance] = [found[c].noisy for c in hp.channels]
            stacked.append(dataclasses.replace(reference, name=utterance,
                                               frames=min(e.frames for e in found.values()),
                                               meta={**reference.meta, "channel": list(hp.channels)}))
        if incomplete:
            warnings.warn(f"{what}: skipped {len(incomplete)} of {len(by_utterance)} utterances without every "
                          f"microphone of channels={list(hp.channels)} (reference CH{hp.reference_channel}) usable, "
                          f"e.g. {incomplete[0]}", stacklevel=3)
        if not stacked:
            raise DataLayoutError(f"{what}: no utterance has every microphone of channels={list(hp.channels)} usable")
        return stacked

    def _loader(self, dataset, batch_size: int, sampler=None):
        if self.hparams.stack_channels:
            dataset = StackedMicrophones(dataset, self.microphones)
        return super()._loader(dataset, batch_size, sampler)


class StackedMicrophones(Dataset):
    """Items of ``reference`` (an :class:`~zoo.data.collate.ExampleDataset` of one example per
    utterance) whose ``"noisy"`` is the utterance's microphones stacked, [K, T].

    Each microphone is read by its own ``ExampleDataset`` over the same names, lengths, crop and
    seed, so its random crop starts at the same sample as the reference's (the offset depends on
    the seed, the epoch, the index and the length only): the channels stay time-aligned."""

    def __init__(self, reference: ExampleDataset, microphones: dict[str, list[Path]]):
        self.reference = reference
        count = len(microphones[reference.examples[0].name]) if reference.examples else 0
        self.channels = [
            ExampleDataset([dataclasses.replace(e, noisy=microphones[e.name][k], clean=None, noise=None)
                            for e in reference.examples], reference.crop_frames, reference.seed)
            for k in range(count)]

    def __len__(self) -> int:
        return len(self.reference)

    def __getitem__(self, key: int) -> dict:
        item = self.reference[key]
        item["noisy"] = torch.stack([channel[key]["noisy"] for channel in self.channels])
        return item


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
