"""LightningDataModules that yield waveform batches and know nothing about models.

Recipes select any of them by class path, e.g. ``data: {class_path: zoo.data.VoiceBankDemand}``.
"""
from . import noises
from .chime4 import Chime4
from .files import DATA_ROOT, audio_files
from .labelled import LabelledClipTasks
from .manifest import ManifestDataModule
from .mixtures import MixtureDataset, Mixtures
from .semisupervised import SemiSupervisedMixtures
from .synthetic import DetunedChord, SparseSignals
from .voicebank import VoiceBankDemand

__all__ = ["DATA_ROOT", "Chime4", "DetunedChord", "LabelledClipTasks", "ManifestDataModule", "MixtureDataset", "Mixtures",
           "SemiSupervisedMixtures", "SparseSignals", "VoiceBankDemand", "audio_files", "noises"]
