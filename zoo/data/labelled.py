"""Pretraining tasks for the feature loss network from a user's own labelled clips.

The feature-loss paper pretrains its loss network on DCASE 2016 acoustic scene classification
(single label, softmax) and CHiME-Home domestic audio tagging (several labels, sigmoid), one
task per classifier head, alternating between tasks (sec. III-A). Neither data set can be had
here, so ``zoo.data.classification.AudioClassificationTasks`` builds two tasks of the same kinds
from ../shared/data; this module plugs in the real ones (or any others) by path.

A task is a *labels file*: one clip per line, ``path<TAB or ,>label[;label ...]``, paths relative
to the labels file's folder (or to ``root``). Lines starting with ``#`` and a header line whose
first field is ``file``/``filename``/``path`` are skipped; fields after the second are ignored.
DCASE 2016 task 1's ``meta.txt`` (``audio/a001_0_30.wav<TAB>beach<TAB>a001``) is such a file
as it is; for CHiME-Home write ``chunk.16kHz.wav,c;m;v`` lines from its chunk annotations.

Clips are random crops of ``crop_samples`` (>= 2^15 as in the paper; shorter clips are looped),
items alternate between tasks, and a task without its own ``val_labels`` holds out a fixed
``val_share`` of its clips (chosen by a hash of the path, so the split never changes).
"""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .files import read_looped, resolve_data_path

HEADER_FIELDS = {"file", "filename", "path", "file_name", "audio"}


def read_labels_file(path, root=None) -> list[tuple[Path, list[str]]]:
    """``[(audio path, [labels])]`` from a labels file; clear errors for missing files and labels."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file {path} does not exist (expected lines 'clip.wav<TAB>label')")
    base = Path(root) if root is not None else path.parent
    text = path.read_text()
    delimiter = "\t" if "\t" in text else ","
    clips = []
    for number, row in enumerate(csv.reader(text.splitlines(), delimiter=delimiter), start=1):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        if number == 1 and row[0].strip().lower() in HEADER_FIELDS:
            continue
        labels = [label.strip() for label in row[1].split(";")] if len(row) > 1 else []
        labels = [label for label in labels if label]
        if not labels:
            raise ValueError(f"{path}, line {number}: no label after {row[0]!r} (expected 'clip.wav<TAB>label')")
        audio = Path(row[0].strip())
        audio = audio if audio.is_absolute() else base / audio
        if not audio.is_file():
            raise FileNotFoundError(f"{path}, line {number}: audio file {audio} does not exist")
        clips.append((audio, labels))
    if not clips:
        raise ValueError(f"labels file {path} lists no clips")
    return clips


def _held_out(path: Path, share: float) -> bool:
    digest = hashlib.sha1(path.name.encode()).digest()
    return int.from_bytes(digest[:4], "little") / 2**32 < share


class LabelledTask:
    """One classification task: its clips, class names and whether several labels may apply."""

    def __init__(self, name: str, clips: list[tuple[Path, list[str]]], classes: list[str], multi_label: bool):
        self.name, self.clips, self.classes, self.multi_label = name, clips, classes, multi_label
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted({label for _, labels in clips for label in labels} - set(index))
        if unknown:
            raise ValueError(f"task {name!r}: labels {unknown} are not among its training classes {classes}")
        if not multi_label:
            several = next((p for p, labels in clips if len(labels) > 1), None)
            if several is not None:
                raise ValueError(f"task {name!r} is single-label but {several} has several labels; "
                                 "set multi_label: true for tagging tasks")
        self.targets = [[index[label] for label in labels] for _, labels in clips]


class LabelledClips(Dataset):
    """Items alternate between tasks: item i belongs to task ``i % len(tasks)``."""

    def __init__(self, tasks: list[LabelledTask], length: int, crop: int, sample_rate: int, seed: int, fixed: bool):
        self.tasks, self.length, self.crop, self.sample_rate = tasks, length, crop, sample_rate
        self.seed, self.fixed, self.draws = seed, fixed, 0
        self.width = max(len(task.classes) for task in tasks)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        self.draws += 1
        rng = np.random.default_rng([self.seed, index] if self.fixed else [self.seed, index, self.draws])
        task_index = index % len(self.tasks)
        task = self.tasks[task_index]
        which = int(rng.integers(len(task.clips)))
        wave = torch.from_numpy(read_looped(task.clips[which][0], self.crop, self.sample_rate, rng, pad="end"))
        target = torch.zeros(self.width)
        target[task.targets[which]] = 1.0
        return {"wave": wave, "task": task_index, "target": target}


class LabelledClipTasks(L.LightningDataModule):
    """Batches {"wave": [B, T], "task": [B], "target": [B, C_max]} for ``FeatureLossNetModule``
    from labels files, e.g. in a recipe::

        data:
          class_path: zoo.data.LabelledClipTasks
          init_args:
            tasks:
              - {name: scenes, labels: /data/TUT-acoustic-scenes-2016-development/meta.txt}
              - {name: tags, labels: /data/chime_home/tags.csv, multi_label: true}

    Each task: ``labels`` (path, relative to ``data_root`` if not absolute), ``name``,
    ``multi_label`` (default false), ``root`` (folder the clip paths are relative to), and
    ``val_labels`` (its own held-out clips; else ``val_share`` of ``labels`` is held out).
    ``task_classes``/``multi_label``/``class_names`` after ``setup`` are what the model needs;
    ``FeatureLossNetModule`` checks them before training.
    """

    def __init__(self, tasks: list[dict], data_root: str | None = None, crop_samples: int = 2**15,
                 sample_rate: int = 16000, batch_size: int = 16, train_size: int = 4000, val_size: int = 400,
                 val_share: float = 0.2, num_workers: int = 0, seed: int = 0):
        super().__init__()
        if not tasks:
            raise ValueError("LabelledClipTasks needs at least one task: [{labels: PATH, multi_label: false}]")
        for task in tasks:
            if "labels" not in task:
                raise ValueError(f"task {task} has no 'labels' (the path of its labels file)")
            unknown = set(task) - {"labels", "name", "multi_label", "root", "val_labels"}
            if unknown:
                raise ValueError(f"task {task.get('name', task['labels'])!r}: unknown keys {sorted(unknown)}")
        if crop_samples < 2**15:
            raise ValueError(f"crop_samples={crop_samples}: the paper's crops are at least 2^15 = 32768 samples")
        if not 0 < val_share < 1:
            raise ValueError(f"val_share must be between 0 and 1, not {val_share}")
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        train, val = [], []
        for number, spec in enumerate(hp.tasks):
            name = spec.get("name") or f"task{number}"
            root = resolve_data_path(spec["root"], hp.data_root) if spec.get("root") else None
            clips = read_labels_file(resolve_data_path(spec["labels"], hp.data_root), root)
            if spec.get("val_labels"):
                held = read_labels_file(resolve_data_path(spec["val_labels"], hp.data_root), root)
            else:
                held = [c for c in clips if _held_out(c[0], hp.val_share)]
                clips = [c for c in clips if not _held_out(c[0], hp.val_share)]
                if not clips or not held:
                    raise ValueError(f"task {name!r}: {len(clips) + len(held)} clips are too few to hold out "
                                     f"{hp.val_share:.0%}; give val_labels or more clips")
            classes = sorted({label for _, labels in clips for label in labels})
            multi = bool(spec.get("multi_label", False))
            train.append(LabelledTask(name, clips, classes, multi))
            val.append(LabelledTask(name, held, classes, multi))
        self.task_names = [task.name for task in train]
        self.class_names = [task.classes for task in train]
        self.task_classes = [len(task.classes) for task in train]
        self.multi_label = [task.multi_label for task in train]
        self.train_set = LabelledClips(train, hp.train_size, hp.crop_samples, hp.sample_rate, hp.seed, fixed=False)
        self.val_set = LabelledClips(val, hp.val_size, hp.crop_samples, hp.sample_rate, hp.seed + 1, fixed=True)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True,
                          num_workers=self.hparams.num_workers, persistent_workers=self.hparams.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)


__all__ = ["LabelledClipTasks", "LabelledClips", "LabelledTask", "read_labels_file"]
