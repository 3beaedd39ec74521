"""Which real audio in ../shared/data trains, validates and tests, decided once for every recipe.

Speakers and noise types never cross splits: validation and test mixtures use LibriSpeech
test-other speakers (5 each) that no recipe trains on, and noise types no recipe trains on.
The VoiceBank-DEMAND subset is test-only (never trained on, never used to pick checkpoints).
"""
from __future__ import annotations

_TEST_OTHER = "speech/librispeech-test-other"

TRAIN_SPEECH = ["speech/librispeech-train-clean-100", "speech/ljspeech"]
VAL_SPEECH = [f"{_TEST_OTHER}/{s}" for s in ("1688", "1998", "2033", "2414", "2609")]
TEST_SPEECH = [f"{_TEST_OTHER}/{s}" for s in ("3005", "3080", "3331", "367", "533")]

TRAIN_NOISE = [
    "noise/speech-commands",
    *(f"noise/noisex/{n}.flac" for n in ("babble", "factory1", "white", "pink", "icra5_0.0625_fullscale",
                                         "ists_-_international_speech_test_signal", "speech-shaped-noise")),
]
VAL_NOISE = ["noise/noisex/factory2.flac", "noise/noisex/volvo.flac"]
TEST_NOISE = ["noise/noisex/m109.flac", "noise/noisex/buccaneer1.flac", "noise/noisex/icra5_0.25_fullscale.flac"]
