"""zoo.data.files: the one read_crop / read_looped, for paths and scanned files, and where a short
file's zeros go (random place for the training mixtures, the end for the held-out set)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from zoo.data.files import DATA_ROOT, WholeFiles, read_crop, read_looped
from zoo.data.mixtures import catalogue

SHORT = DATA_ROOT / "noise" / "nonspeech100" / "n91.flac"  # 14815 samples at 16 kHz: shorter than one second
LONG = DATA_ROOT / "noise" / "noisex" / "m109.flac"  # 20 s


@pytest.fixture(scope="module")
def short_wave() -> np.ndarray:
    wave, rate = sf.read(SHORT, dtype="float32")
    assert rate == 16000 and wave.ndim == 1 and len(wave) == 14815
    return wave


def test_a_short_file_is_padded_at_the_end_or_at_a_random_place(short_wave):
    end = read_crop(SHORT, 16000, 16000, np.random.default_rng(3), pad="end")
    assert end.dtype == np.float32 and end.shape == (16000,)
    assert np.array_equal(end[:14815], short_wave) and not end[14815:].any()

    rng = np.random.default_rng(3)
    placed = read_crop(SHORT, 16000, 16000, rng, pad="random")
    before = int(np.flatnonzero(placed)[0])
    assert 0 < before < 1185 and np.array_equal(placed[before:before + 14815], short_wave)
    assert not placed[:before].any() and not placed[before + 14815:].any()
    # the random place is one more draw from the generator; the end costs none
    rng_end = np.random.default_rng(3)
    read_crop(SHORT, 16000, 16000, rng_end, pad="end")
    assert rng.integers(1 << 30) != rng_end.integers(1 << 30)
    with pytest.raises(ValueError, match="pad must be one of 'random', 'end'"):
        read_crop(SHORT, 16000, 16000, np.random.default_rng(0), pad="start")


def test_a_path_and_a_scanned_file_give_the_same_crop():
    scanned = catalogue([LONG], "noise")[0][0]
    for rate in (16000, 22050):
        by_path = read_crop(LONG, 8000, rate, np.random.default_rng(7))
        by_scan = read_crop(scanned, 8000, rate, np.random.default_rng(7))
        assert by_path.shape == (8000,) and np.array_equal(by_path, by_scan)


def test_read_looped_wraps_a_short_file_and_crops_a_long_one(short_wave):
    looped = read_looped(SHORT, 40000, 16000, np.random.default_rng(1), WholeFiles(16000))
    offset = int(np.random.default_rng(1).integers(0, 14815))  # the one draw: a random start in the file
    assert np.array_equal(looped, short_wave[(offset + np.arange(40000)) % 14815])
    long_crop = read_looped(LONG, 40000, 16000, np.random.default_rng(1))
    assert np.array_equal(long_crop, read_crop(LONG, 40000, 16000, np.random.default_rng(1)))
