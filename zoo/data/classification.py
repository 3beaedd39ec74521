"""Audio classification tasks from ../shared/data, to pretrain the feature loss network.

The feature-loss paper pretrains on DCASE 2016 scene classification and CHiME-Home tagging
(sec. III-A); neither can be had here, so two tasks of the same kinds are built from real audio:

- task 0, single-label: which of the 18 real noise recordings (Speech Commands background
  noises and NOISEX-92) a clip comes from, like a scene label;
- task 1, multi-label: tags of a mixture of optional speech (LibriSpeech/LJSpeech) and zero to
  two noise categories (stationary, babble, machinery, domestic), like CHiME-Home's tags.

Clips are random crops of ``crop_samples`` (>= 2^15, sec. III-A c) and tasks alternate item
by item (the paper alternates files from each task). Noise recordings are split in time: the
first 80 % for training, the rest for held-out clips; speech follows ``zoo.data.splits``.
"""
from __future__ import annotations

import lightning as L
import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from .files import audio_files, read_crop, resolve_data_path
from .splits import TRAIN_SPEECH, VAL_SPEECH

NOISE_FILES = {  # file stem -> category of the tagging task
    "doing_the_dishes": "domestic", "dude_miaowing": "domestic", "running_tap": "domestic",
    "exercise_bike": "machinery", "pink_noise": "stationary", "white_noise": "stationary",
    "babble": "babble", "buccaneer1": "machinery", "factory1": "machinery", "factory2": "machinery",
    "icra5_0.0625_fullscale": "babble", "icra5_0.25_fullscale": "babble",
    "ists_-_international_speech_test_signal": "babble", "m109": "machinery", "pink": "stationary",
    "speech-shaped-noise": "stationary", "volvo": "stationary", "white": "stationary",
}
TAGS = ("speech", "stationary", "babble", "machinery", "domestic")
TASK_CLASSES = (len(NOISE_FILES), len(TAGS))


class ClassificationClips(Dataset):
    def __init__(self, noises: list[torch.Tensor], speech_files, length: int, crop: int, seed: int, fixed: bool):
        self.noises, self.speech, self.length, self.crop = noises, speech_files, length, crop
        self.seed, self.fixed, self.draws = seed, fixed, 0
        self.categories = [TAGS.index(NOISE_FILES[name]) for name in NOISE_FILES]

    def __len__(self) -> int:
        return self.length

    def _noise_crop(self, index: int, rng) -> torch.Tensor:
        noise = self.noises[index]
        start = int(rng.integers(0, max(1, noise.shape[-1] - self.crop)))
        clip = noise[start:start + self.crop]
        return torch.nn.functional.pad(clip, (0, self.crop - clip.shape[-1]))

    def __getitem__(self, index: int) -> dict:
        self.draws += 1
        rng = np.random.default_rng([self.seed, index] if self.fixed else [self.seed, index, self.draws])
        target = torch.zeros(max(TASK_CLASSES))
        task = index % 2
        if task == 0:
            which = int(rng.integers(len(self.noises)))
            wave = self._noise_crop(which, rng)
            target[which] = 1.0
        else:
            wave = torch.zeros(self.crop)
            if rng.random() < 0.5:
                speech = torch.from_numpy(read_crop(self.speech[rng.integers(len(self.speech))], self.crop, 16000, rng,
                                                    pad="end"))
                wave += speech / speech.abs().max().clamp_min(1e-4) * 0.5
                target[0] = 1.0
            for which in rng.choice(len(self.noises), size=int(rng.integers(0, 3)), replace=False):
                noise = self._noise_crop(int(which), rng)
                wave += noise / noise.abs().max().clamp_min(1e-4) * float(rng.uniform(0.05, 0.5))
                target[self.categories[int(which)]] = 1.0
        wave = wave * float(10 ** (rng.uniform(-20, 0) / 20)) / wave.abs().max().clamp_min(1e-4)
        return {"wave": wave, "task": task, "target": target}


class AudioClassificationTasks(L.LightningDataModule):
    """Batches {"wave": [B, T], "task": [B], "target": [B, 18]} for ``FeatureLossNetModule``."""

    def __init__(self, data_root: str | None = None, crop_samples: int = 2**15, batch_size: int = 16,
                 train_size: int = 4000, val_size: int = 400, num_workers: int = 0, seed: int = 0,
                 train_share: float = 0.8):
        super().__init__()
        self.save_hyperparameters()

    #: what FeatureLossNetModule must be built with (it checks before training)
    task_classes = list(TASK_CLASSES)
    multi_label = [False, True]

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        train_noise, val_noise = [], []
        for stem in NOISE_FILES:
            path = next(p for p in audio_files(["noise"], hp.data_root) if p.stem == stem)
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
            if rate != 16000:
                raise ValueError(f"{path}: expected 16 kHz noise, got {rate} Hz")
            wave = torch.from_numpy(data.mean(axis=1))
            cut = int(hp.train_share * wave.shape[-1])
            train_noise.append(wave[:cut])
            val_noise.append(wave[cut:])
        self.train_set = ClassificationClips(train_noise, audio_files(TRAIN_SPEECH, hp.data_root), hp.train_size,
                                             hp.crop_samples, hp.seed, fixed=False)
        self.val_set = ClassificationClips(val_noise, audio_files(VAL_SPEECH, hp.data_root), hp.val_size,
                                           hp.crop_samples, hp.seed + 1, fixed=True)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True,
                          num_workers=self.hparams.num_workers, persistent_workers=self.hparams.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)


__all__ = ["AudioClassificationTasks", "ClassificationClips", "NOISE_FILES", "TAGS", "TASK_CLASSES",
           "resolve_data_path"]
