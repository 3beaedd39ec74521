"""Shared fixtures: the bundled Wiener model and real VoiceBank-DEMAND speech.

Every test builds its variants (stereo, other rates, int16, broken files ...) from this real
audio inside ``tmp_path``; nothing is ever written into the shared data (``$ZOO_DATA``, default
``../shared/data``), which is where the example pair p232_013 comes from.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: the shared data (never committed): $ZOO_DATA, else ../shared/data beside the checkout
DATA_ROOT = Path(os.environ.get("ZOO_DATA", PROJECT_ROOT.parent / "shared" / "data"))
VOICEBANK_SUBSET = DATA_ROOT / "voicebank-demand-subset"
EXAMPLE_NOISY = VOICEBANK_SUBSET / "noisy_testset_wav" / "p232_013.wav"
EXAMPLE_CLEAN = VOICEBANK_SUBSET / "clean_testset_wav" / "p232_013.wav"
EXAMPLE_RATE = 16000


def read_example(path: Path) -> np.ndarray:
    data, rate = sf.read(str(path), dtype="float32")
    assert rate == EXAMPLE_RATE and data.ndim == 1, (path, rate, data.shape)
    return data


@pytest.fixture(scope="session")
def wiener_model():
    """``zoo.load("wiener")``, once per session (offline it is the bundled copy)."""
    import zoo

    model = zoo.load("wiener")
    assert model.sample_rate == EXAMPLE_RATE and not model.training
    return model


@pytest.fixture
def noisy_speech() -> np.ndarray:
    """Real noisy speech (p232_013, VoiceBank-DEMAND), float32 [T] at 16 kHz; a fresh copy."""
    return read_example(EXAMPLE_NOISY)


@pytest.fixture
def clean_speech() -> np.ndarray:
    """The clean reference of :func:`noisy_speech`, float32 [T] at 16 kHz; a fresh copy."""
    return read_example(EXAMPLE_CLEAN)
