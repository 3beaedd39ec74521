"""Chunked inference equals whole-signal inference, at every rate, in bounded memory."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch

import zoo
from zoo.audio import read_audio, resample
from zoo.inference import OverlapStream, resampler_stream, run_stream, split_blocks
from zoo.models.can import ContextAggregationDenoiser, ContextAggregationNetwork

from conftest import EXAMPLE_CLEAN, EXAMPLE_NOISY

EXAMPLE = EXAMPLE_NOISY


@pytest.fixture(scope="module")
def speech():
    wave, rate = read_audio(EXAMPLE)
    assert rate == 16000
    return wave


@pytest.fixture(scope="module")
def small_can():
    torch.manual_seed(0)
    model = ContextAggregationDenoiser(width=8, dilations=[1, 2, 4, 8, 16, 32, 64, 1]).eval()
    # Non-trivial normalisation so that eval-mode BN matters.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
        if hasattr(module, "beta") and isinstance(module.beta, torch.nn.Parameter):
            module.beta.data.fill_(0.5)
    return model


def test_receptive_field_of_paper_can_is_2_pow_14_plus_1():
    network = ContextAggregationNetwork()
    assert network.receptive_field == 2**14 + 1
    # Empirically: an impulse changes exactly the outputs within the context.
    small = ContextAggregationNetwork(width=4, dilations=(1, 2, 4, 1)).eval()
    x = torch.zeros(1, 101)
    base = small(x)
    x[0, 50] = 1.0
    changed = (small(x) - base).abs()[0] > 0
    assert changed.nonzero().min().item() == 50 - small.context
    assert changed.nonzero().max().item() == 50 + small.context


@pytest.mark.parametrize("block_seconds", [0.13, 0.5, 1.7])
def test_can_chunked_equals_whole(small_can, speech, block_seconds):
    whole = small_can(speech)
    chunked = small_can.enhance(speech, 16000, chunk_seconds=block_seconds)
    assert chunked.shape == speech.shape
    assert (chunked - whole).abs().max() < 1e-5


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_chunked_equals_whole_through_resampling(small_can, speech, rate):
    wave = resample(speech, 16000, rate)
    whole = resample(small_can(resample(wave, rate, 16000)), 16000, rate)[..., : wave.shape[-1]]
    chunked = small_can.enhance(wave, rate, chunk_seconds=0.41)
    assert chunked.shape == wave.shape
    assert (chunked - whole).abs().max() < 1e-5


@pytest.mark.parametrize("block", [1, 159, 160, 1000, 4001])
def test_wiener_stream_equals_whole_for_any_block(speech, block):
    model = zoo.load("wiener")
    whole = model(speech)
    streamed = torch.cat(list(run_stream(model.stream(), split_blocks(speech, block))), dim=-1)
    assert streamed.shape == speech.shape
    assert (streamed - whole).abs().max() < 1e-6


def test_wiener_reduces_noise_on_real_speech(speech):
    """Against the clean reference, the filtered signal is closer than the noisy one."""
    clean, _ = read_audio(EXAMPLE_CLEAN)
    model = zoo.load("wiener")
    enhanced = model.enhance(speech, 16000)
    snr = lambda est: 10 * torch.log10(clean.pow(2).sum() / (est - clean).pow(2).sum())  # noqa: E731
    assert snr(enhanced) > snr(speech) + 2.0


def test_overlap_stream_rejects_nothing_and_keeps_length():
    """Resampler streams give exactly the whole-signal length for odd lengths and rates."""
    x = torch.randn(2, 12345)
    for orig, new in [(44100, 16000), (16000, 44100), (48000, 16000), (8000, 16000)]:
        whole = resample(x, orig, new)
        streamed = torch.cat(list(run_stream(resampler_stream(orig, new), split_blocks(x, 777))), dim=-1)
        assert streamed.shape == whole.shape
        assert (streamed - whole).abs().max() < 1e-5


def test_overlap_stream_with_insufficient_context_would_differ(small_can, speech):
    """The exactness test can fail: with too little context the chunked result is wrong."""
    too_short = OverlapStream(small_can._forward_eval, context=small_can.context_samples // 4)
    chunked = torch.cat(list(run_stream(too_short, split_blocks(speech, 3000))), dim=-1)
    assert (chunked - small_can(speech).detach()).abs().max() > 1e-4


_MEMORY_SCRIPT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, ".")
    import zoo
    from zoo.models.can import ContextAggregationDenoiser
    torch.set_num_threads(2)
    name, src, dst = sys.argv[1:4]
    model = zoo.load("wiener") if name == "wiener" else ContextAggregationDenoiser(width=8).eval()
    def status_mb(field):
        # VmHWM, not ru_maxrss: across fork+exec ru_maxrss keeps the parent's (pytest's) peak
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    before = status_mb("VmRSS")
    model.enhance_file(src, dst, chunk_seconds=30)
    print(f"{before:.1f} {status_mb('VmHWM'):.1f}")
""")


def _long_file(tmp_path, speech, minutes: float, rate: int):
    wave = resample(speech, 16000, rate)[0].numpy()
    repeats = int(np.ceil(minutes * 60 * rate / wave.size))
    path = tmp_path / f"long_{rate}.wav"
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        for _ in range(repeats):
            out.write(wave)
    return path


def _peak_extra_mb(model: str, src, dst) -> float:
    result = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, model, str(src), str(dst)],
                            capture_output=True, text=True, check=True)
    before, peak = map(float, result.stdout.split())
    return peak - before


def test_ten_minute_file_in_bounded_memory(tmp_path, speech):
    """A 10-minute file at 44.1 kHz: the whole-file activations of even a width-8 CAN would
    need several GB (8 channels x 26 M samples x 4 bytes per layer); chunked, it stays small."""
    src = _long_file(tmp_path, speech, 10, 44100)
    extra = _peak_extra_mb("can", src, tmp_path / "out.wav")
    print(f"10-minute file: {extra:.0f} MB beyond the model")
    assert extra < 500, f"enhancing a 10-minute file took {extra:.0f} MB beyond the model"
    assert sf.info(str(tmp_path / "out.wav")).frames == sf.info(str(src)).frames


@pytest.mark.slow
@pytest.mark.parametrize("model", ["wiener", "can"])
def test_thirty_minute_file_under_1gb(tmp_path, speech, model):
    src = _long_file(tmp_path, speech, 30, 48000)
    extra = _peak_extra_mb(model, src, tmp_path / "out.wav")
    assert extra < 1024, f"{model}: a 30-minute file took {extra:.0f} MB beyond the model"
    assert sf.info(str(tmp_path / "out.wav")).frames == sf.info(str(src)).frames
