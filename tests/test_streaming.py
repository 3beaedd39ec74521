"""Streaming modes (``DenoiserModule.streaming``): chunked inference equals whole-signal inference.

A model declares how it streams: ``"overlap"`` (``context_samples`` each side, windows on
multiples of ``hop_samples``), ``"recursive"`` (its own stream carries its state) or ``"whole"``
(unbounded context, held whole up to ``whole_signal_max_seconds``). The registry-wide test
enhances real speech with every registered model at 8, 16, 44.1 and 48 kHz, in blocks whose
length is no multiple of any model's hop, and compares with the same call in one block.

Tolerance: ``TOLERANCE`` = 2e-6 absolute at full scale 1.0, a fifteenth of one 16-bit step
(1/32768 = 3.1e-5): what float32 rounding leaves when a 14-layer network runs on windows of
different lengths (and when the released CAN's per-layer statistics are summed block by block
rather than over the whole input); measured at most 6e-7 on this machine.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch

import zoo
from zoo.audio import read_audio, resample
from zoo.inference import OverlapStream, WholeSignalStream, WholeSignalTooLongError, run_stream, split_blocks
from zoo.module import DenoiserModule, block_frames

from conftest import EXAMPLE_NOISY, PROJECT_ROOT

TOLERANCE = 2e-6
RATES = (8000, 16000, 44100, 48000)
#: block lengths in samples at each rate: odd, so no multiple of any hop (512, 160, 480 ...); about
#: 0.6 to 1.3 s, so that a 3 s input is several blocks
BLOCKS = {8000: 5705, 16000: 20667, 44100: 35293, 48000: 28807}
SECONDS = 3.0


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    """3 s of real noisy speech (VoiceBank-DEMAND p232_013), [1, T] at 16 kHz."""
    wave, rate = read_audio(EXAMPLE_NOISY)
    assert rate == 16000 and wave.shape[-1] > SECONDS * rate
    return wave[..., : int(SECONDS * rate)]


# ---------------------------------------------------------------------------------------------
# Every registered model


_loaded: dict[str, DenoiserModule] = {}


def _converted_copy(name: str, tmp_root) -> DenoiserModule:
    """A registered card whose weights are converted from someone else's release on set-up
    (``zoo convert``, ``make weights``): convert them into a copy of the card folder, never into
    ``hub_cards/``; skipped only where the release is not on this machine."""
    from zoo.convert import SOURCES, install_converted

    weights = Path(os.environ.get("ZOO_WEIGHTS", PROJECT_ROOT.parent / "shared" / "weights"))
    release = weights / SOURCES.get(name, "?")
    if not release.is_dir():
        pytest.skip(f"{name}: its weights are converted on set-up (zoo convert) from a release that is not in "
                    f"{weights} (set ZOO_WEIGHTS)")
    card = tmp_root / name
    shutil.copytree(zoo.registry.get_entry(name).card_path, card)
    install_converted(release, tmp_root)
    return zoo.load(str(card))


def registered(name: str, tmp_path_factory) -> DenoiserModule:
    if name not in _loaded:
        card = zoo.registry.get_entry(name).card_path
        if (card / "config.json").is_file() and not (card / "model.safetensors").is_file():
            _loaded[name] = _converted_copy(name, tmp_path_factory.mktemp("cards"))
        else:
            _loaded[name] = zoo.load(name)
    return _loaded[name]


def _input_for(model: DenoiserModule, speech: torch.Tensor) -> torch.Tensor:
    """[1, T] speech for a mono model; K channels (the speech delayed by 0, 3, 6 ... samples, as
    microphones a few centimetres apart hear it) for a model that takes K at once."""
    k = model.input_channels
    if k == 1:
        return speech
    return torch.cat([torch.nn.functional.pad(speech, (3 * c, 0))[..., : speech.shape[-1]] for c in range(k)])


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("name", zoo.list_models())
def test_every_registered_model_chunked_equals_whole(name, rate, speech, tmp_path_factory):
    model = registered(name, tmp_path_factory)
    assert model.streaming in ("overlap", "recursive", "whole")
    wave = resample(_input_for(model, speech), 16000, rate)
    block = BLOCKS[rate]
    chunk_seconds = (block + 0.5) / rate
    assert block_frames(chunk_seconds, rate) == block and block % 2 and wave.shape[-1] > 2 * block
    assert model.streaming != "overlap" or model.hop_samples == 1 or block % model.hop_samples
    whole = model.enhance(wave, rate, chunk_seconds=2 * SECONDS)  # one block: the whole signal
    chunked = model.enhance(wave, rate, chunk_seconds=chunk_seconds)
    assert chunked.shape == whole.shape == ((wave.shape[-1],) if model.input_channels > 1 else wave.shape)
    assert whole.abs().max() > 0.05  # real output, not silence
    error = float((chunked - whole).abs().max())
    assert error < TOLERANCE, f"{name} ({model.streaming}) at {rate} Hz: chunked differs from whole by {error:.3g}"


# ---------------------------------------------------------------------------------------------
# The three modes, with small models


class FrameGain(DenoiserModule):
    """A frame model: 1024-sample Hann STFT, hop 512, each bin scaled by |X| / (|X| + 0.05)
    (a magnitude-dependent gain, so a frame grid shifted by a few samples changes the output)."""

    trainable = False
    context_samples = 1024  # output t depends on the frames over t, which read t-1023 .. t+1023
    hop_samples = 512

    def __init__(self, hop_samples: int = 512):
        super().__init__()
        self.hop_samples = hop_samples  # what the model declares (the STFT's hop stays 512)
        self.register_buffer("window", torch.hann_window(1024), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, 1024, 512, window=self.window, center=True, return_complex=True)
        gain = spec.abs() / (spec.abs() + 0.05)
        return torch.istft(spec * gain, 1024, 512, window=self.window, center=True, length=wave.shape[-1])


class LoudnessNormaliser(DenoiserModule):
    """Whole-signal: scales the input to an RMS of 0.1 over the whole input (every output sample
    depends on every input sample); holds at most 5 s."""

    trainable = False
    whole_signal_max_seconds = 5.0

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return wave * (0.1 / wave.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-8))


@pytest.mark.parametrize("block", [3000, 5000, 4096, 777])
def test_a_frame_model_chunked_equals_whole_at_any_block(speech, block):
    model = FrameGain().eval()
    assert model.streaming == "overlap"
    whole = model(speech)
    chunked = model.enhance(speech, 16000, chunk_seconds=block / 16000)
    assert (chunked - whole).abs().max() < 1e-6
    assert (whole - speech).abs().max() > 0.01  # the gain does something


def test_a_frame_model_that_hides_its_hop_is_wrong_in_blocks(speech):
    """The failure this guards against (issue 19): windows aligned to 1 sample, not to the hop, frame
    the signal differently, and 3000- or 5000-sample blocks differ from the whole signal."""
    model = FrameGain(hop_samples=1).eval()
    whole = model(speech)
    for block in (3000, 5000):
        chunked = torch.cat(list(run_stream(model.stream(), split_blocks(speech, block))), dim=-1)
        assert (chunked - whole).abs().max() > 1e-3


@pytest.mark.parametrize("rate", [8000, 44100])
def test_a_frame_model_through_resampling(speech, rate):
    model = FrameGain().eval()
    wave = resample(speech, 16000, rate)
    whole = model.enhance(wave, rate, chunk_seconds=10)
    chunked = model.enhance(wave, rate, chunk_seconds=0.3137)
    assert (chunked - whole).abs().max() < 1e-6


def test_a_whole_signal_model_is_exact_in_blocks_and_holds_the_input(speech):
    model = LoudnessNormaliser().eval()
    assert model.streaming == "whole" and isinstance(model.stream(), WholeSignalStream)
    whole = model(speech)
    assert abs(float(whole.pow(2).mean().sqrt()) - 0.1) < 1e-4
    chunked = model.enhance(speech, 16000, chunk_seconds=0.25)
    assert (chunked - whole).abs().max() < 1e-6
    # what chunking without the whole signal would give: each block at its own loudness
    blockwise = torch.cat([model(b) for b in split_blocks(speech, 4000)], dim=-1)
    assert (blockwise - whole).abs().max() > 0.01
    at_44k = model.enhance(resample(speech, 16000, 44100), 44100, chunk_seconds=0.37)
    assert (at_44k - model.enhance(resample(speech, 16000, 44100), 44100, chunk_seconds=10)).abs().max() < 1e-6


def test_a_whole_signal_model_refuses_an_input_beyond_its_bound(speech, tmp_path):
    model = LoudnessNormaliser().eval()
    long = speech.repeat(1, 2)  # 6 s > 5 s
    expected = (r"LoudnessNormaliser enhances the whole input at once \(streaming mode 'whole': its context is "
                r"unbounded, so it holds the input in memory\) and accepts at most 5 s \(whole_signal_max_seconds\); "
                r"this input is 6\.0 s long \(96000 samples at 16000 Hz\)\. Split it into parts of at most 5 s")
    with pytest.raises(WholeSignalTooLongError, match=expected):
        model.enhance(long, 16000)
    with pytest.raises(WholeSignalTooLongError, match=r"this input is 6\.0 s long \(264600 samples at 44100 Hz\)"):
        model.enhance(resample(long, 16000, 44100), 44100, chunk_seconds=1)
    src = tmp_path / "long.wav"
    sf.write(str(src), long[0].numpy(), 16000, subtype="PCM_16")
    with pytest.raises(WholeSignalTooLongError, match="this input is 6.0 s long"):
        model.enhance_file(src, tmp_path / "out.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.wav"]  # nothing written, no temporary left
    # the stream itself stops holding at the bound (for callers that push blocks of unknown total)
    with pytest.raises(WholeSignalTooLongError, match=r"this input is 5\.0 s long \(80001 samples"):
        list(run_stream(model.stream(), split_blocks(long, 16000 * 5 + 1)))
    assert model.enhance(long[..., : 5 * 16000], 16000).shape == (1, 5 * 16000)  # exactly the bound: accepted


def test_the_wiener_filter_streams_with_recursive_state(speech):
    model = zoo.load("wiener")
    assert model.streaming == "recursive"
    assert not isinstance(model.stream(), (OverlapStream, WholeSignalStream))
    whole = model(speech)
    for block in (159, 1000, 4001):  # its hop is 160 samples
        chunked = torch.cat(list(run_stream(model.stream(), split_blocks(speech, block))), dim=-1)
        assert (chunked - whole).abs().max() < 1e-6


def test_the_streaming_mode_is_one_line_of_a_card():
    assert FrameGain().streaming_summary() == (
        "1 input channel (each channel of a multichannel input is enhanced on its own); streaming: overlap (1024 "
        "samples of context each side at 16000 Hz, windows on its 512-sample hop): chunked output equals whole-file "
        "output")
    assert LoudnessNormaliser().streaming_summary().endswith(
        "streaming: whole signal (unbounded context: the input is held whole and enhanced at once, up to 5 s)")
    assert zoo.load("wiener").streaming_summary().endswith(
        "streaming: recursive (its state is carried from block to block): chunked output equals whole-file output")


def test_a_model_without_a_mode_or_with_a_bad_one_is_told_what_to_declare(speech):
    class Undeclared(DenoiserModule):
        def forward(self, wave):
            return wave

    with pytest.raises(NotImplementedError, match="Undeclared declares no streaming mode: set context_samples "
                                                  r"\(and hop_samples\) for a finite context, override stream\(\)"):
        Undeclared().enhance(speech, 16000)
    bad_hop = FrameGain(hop_samples=0)
    with pytest.raises(ValueError, match="FrameGain.hop_samples must be a whole number of samples >= 1, got 0"):
        bad_hop.enhance(speech, 16000)

    class NoBound(LoudnessNormaliser):
        whole_signal_max_seconds = -1

    with pytest.raises(ValueError, match="NoBound.whole_signal_max_seconds must be a positive number of seconds"):
        NoBound().stream()


def test_overlap_stream_windows_start_on_the_hop():
    """The stream keeps windows on multiples of lcm(hop, down): a window never starts mid-frame."""
    starts = []

    def record(window):
        starts.append(stream.start)
        return window

    stream = OverlapStream(record, context=100, hop=48)
    out = torch.cat(list(run_stream(stream, split_blocks(torch.randn(1, 5000), 333))), dim=-1)
    assert out.shape == (1, 5000) and len(starts) > 5 and all(s % 48 == 0 for s in starts) and max(starts) > 0
    with pytest.raises(ValueError, match="hop >= 1"):
        OverlapStream(record, context=1, hop=0)
    assert OverlapStream(record, 10, up=160, down=441, hop=2).align == 882


def test_every_card_states_its_channels_and_streaming_mode():
    """zoo.cards renders the line from the architecture built as its config.json says (no weights)."""
    from zoo.cards import render_card

    for name in zoo.list_models():
        entry = zoo.registry.get_entry(name)
        text = render_card(entry, entry.card_path, [])
        line = next(line for line in text.splitlines() if line.startswith("- Input: "))
        assert line.startswith("- Input: 1 input channel (each channel of a multichannel input is enhanced on its "
                               "own); streaming: "), line
        mode = "recursive" if name == "wiener" else "overlap (8192 samples of context each side at 16000 Hz"
        assert f"; streaming: {mode}" in line, line
