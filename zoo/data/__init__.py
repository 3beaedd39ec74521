"""LightningDataModules that yield waveform batches and know nothing about models."""
from .files import DATA_ROOT, audio_files
from .mixtures import Mixtures, MixtureDataset

__all__ = ["DATA_ROOT", "Mixtures", "MixtureDataset", "audio_files"]
