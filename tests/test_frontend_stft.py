"""zoo.frontends: the one framing (positions, counts, padding), STFT / iSTFT exact reconstruction
for every framing the zoo uses, noisy-phase resynthesis, the MaskingDenoiser boundary and its
streaming declaration, and the users that frame through it (Wiener filter, plots, measures)."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from zoo.frontends.masking import MaskingDenoiser, SpectralFeatures
from zoo.frontends.stft import (STFT, OverlapAddStream, frame_count, frames, istft, magnitude_phase, overlap_add,
                                resynthesize, stft, window)

from conftest import EXAMPLE_CLEAN, EXAMPLE_NOISY, read_example

#: (name, stft keyword arguments): every analysis-synthesis framing of the zoo's model families
FRAMINGS = [
    ("autoencoders 1024/512 (thesis Eq. 29)", dict(n_fft=1024, hop=512)),
    ("BiLSTM 800/400 (50 ms / 25 ms at 16 kHz)", dict(n_fft=800, hop=400)),
    ("512/128", dict(n_fft=512, hop=128)),
    ("Wiener: symmetric Hamming 320/160, FFT 1024",
     dict(n_fft=1024, hop=160, win_length=320, window="hamming", periodic=False, center=False)),
    ("Wiener framing, centred", dict(n_fft=1024, hop=160, win_length=320, window="hamming", periodic=False)),
]
#: none a multiple of any hop above; 200 is shorter than every frame
LENGTHS = [16000 + 37, 12345, 1025, 200]


@pytest.fixture(scope="module")
def speech_rows() -> torch.Tensor:
    """Six different 1.2 s stretches of real speech (noisy and clean p232_013), float64 [2, 3, T]."""
    noisy, clean = read_example(EXAMPLE_NOISY), read_example(EXAMPLE_CLEAN)
    length = 19237
    rows = [wave[start:start + length] for wave in (noisy, clean) for start in (0, 9000, 17000)]
    assert all(len(r) == length for r in rows)
    return torch.from_numpy(np.stack(rows)).double().reshape(2, 3, length)


# --- the framing ---------------------------------------------------------------------------------

def test_frame_positions_and_counts_follow_the_stated_convention():
    signal = torch.arange(1000, dtype=torch.float64)
    # centred: frame m is centred on sample m * hop, zeros before the start
    centred = frames(signal, 256, 100)
    assert centred[0, 128] == 0 and centred[3, 128] == 300 and centred[0, :128].abs().sum() == 0
    # tail="pad": every frame that starts before the end, ceil((T + left) / hop), and no more
    assert centred.shape == (math.ceil((1000 + 128) / 100), 256) == (12, 256)
    assert (centred[-1, 0] < 1000) and (centred[-1] == 0).any()  # the last frame starts inside, ends in zeros
    # not centred: frame m starts at sample m * hop
    plain = frames(signal, 256, 100, center=False)
    assert plain[0, 0] == 0 and plain[4, 0] == 400 and plain.shape[0] == 10  # starts 0 .. 900
    # tail="drop": only whole frames (torch.stft's count when centred)
    assert frames(signal, 256, 100, center=False, tail="drop").shape == (8, 256)  # starts 0 .. 700
    assert frame_count(1000, 256, 100, tail="drop") == torch.stft(signal, 256, 100, window=torch.hann_window(
        256, dtype=torch.float64), return_complex=True).shape[-1]
    assert frames(signal, 256, 100, center=False, tail="drop", count=3).shape == (3, 256)
    with pytest.raises(ValueError, match="asked for 9 frames of 256 samples .* has 8"):
        frames(signal, 256, 100, center=False, tail="drop", count=9)


def test_numpy_and_torch_frames_and_spectra_agree(speech_rows):
    x = speech_rows[0, 0, :5000]
    for kwargs in (dict(center=False, tail="drop"), dict(center=True, tail="pad"), dict(pad_mode="reflect")):
        assert np.array_equal(frames(x.numpy(), 480, 120, **kwargs), frames(x, 480, 120, **kwargs).numpy())
        ours = stft(x.numpy(), 1024, 120, win_length=480, **kwargs)
        theirs = stft(x, 1024, 120, win_length=480, **kwargs).numpy()
        assert ours.dtype == np.complex128 and np.abs(ours - theirs).max() < 1e-12


def test_plot_framing_is_torch_stft_bit_for_bit(speech_rows):
    """The spectrogram plots kept their numbers: centred, mirrored ends, float32 periodic Hann."""
    x = speech_rows[0, 1].float()
    reference = torch.stft(x, 512, hop_length=128, window=torch.hann_window(512), return_complex=True)
    ours = stft(x, 512, 128, pad_mode="reflect", tail="drop")
    assert torch.equal(ours.transpose(-1, -2), reference)


def test_windows():
    assert torch.equal(window("hann", 8), torch.hann_window(8))
    assert torch.equal(window("hamming", 320, periodic=False, dtype=torch.float64),
                       torch.hamming_window(320, periodic=False, dtype=torch.float64))
    # the periodic Hann at 50 % overlap sums to exactly one: the thesis' perfect-reconstruction condition
    w = window("hann", 1024, dtype=torch.float64)
    assert (w[:512] + w[512:] - 1).abs().max() < 1e-15
    with pytest.raises(ValueError, match="unknown window 'kaiser'"):
        window("kaiser", 8)


# --- exact reconstruction ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name,kwargs", FRAMINGS, ids=[f[0] for f in FRAMINGS])
def test_istft_of_stft_gives_the_signal_back(speech_rows, name, kwargs, dtype):
    for length in LENGTHS:
        x = speech_rows[..., :length].to(dtype)
        spectrum = stft(x, **kwargs)
        assert spectrum.shape[:2] == (2, 3) and spectrum.shape[-1] == kwargs["n_fft"] // 2 + 1
        back = istft(spectrum, length=length, **kwargs)
        assert back.shape == x.shape and back.dtype == dtype
        error = (back - x).abs().max().item()
        assert error < (1e-6 if dtype == torch.float32 else 1e-12), (name, length, error)
        # and through the magnitude and the (noisy) phase: Eq. 29 with the true magnitude
        magnitude, phase = magnitude_phase(spectrum)
        assert (resynthesize(magnitude, phase, length=length, **kwargs) - x).abs().max().item() < 1e-6


def test_resynthesis_is_linear_in_the_magnitude(speech_rows):
    x = speech_rows[0, :, :12345].float()
    frontend = STFT(1024, 512)
    magnitude, phase = magnitude_phase(frontend.stft(x))
    assert (frontend.resynthesize(0.5 * magnitude, phase, 12345) - 0.5 * x).abs().max() < 1e-6
    # differentiable in the magnitude: a magnitude model trains through the synthesis
    estimate = magnitude.clone().requires_grad_()
    (frontend.resynthesize(estimate, phase, 12345) - x).pow(2).sum().backward()
    assert estimate.grad.shape == magnitude.shape and estimate.grad.abs().max() < 1e-3  # at the optimum already
    estimate.grad = None
    (frontend.resynthesize(estimate, phase, 12345) - 0.5 * x).pow(2).sum().backward()
    assert estimate.grad.abs().max() > 1e-3
    assert frontend.context_samples == 1023 and frontend.frame_count(12345) == math.ceil((12345 + 512) / 512)


def test_istft_refuses_what_it_cannot_invert(speech_rows):
    x = speech_rows[0, 0, :4000]
    spectrum = stft(x, 512, 256, center=False)
    with pytest.raises(ValueError, match=r"squared window sums to \(nearly\) zero at 1 of the 4000 samples "
                                         r"\(first at sample 0\).*center=True"):
        istft(spectrum, 512, 256, length=4000, center=False)
    with pytest.raises(ValueError, match="pass the length stft was given"):
        istft(stft(x, 512, 256), 512, 256, length=5000)


def test_overlap_add_stream_equals_overlap_add_at_once():
    """The Wiener filter's synthesis: frames pushed a few at a time give the one-piece overlap-add."""
    framed = torch.randn(2, 13, 320, dtype=torch.float64)
    whole = overlap_add(framed, 160)
    assert whole.shape == (2, 12 * 160 + 320)
    stream = OverlapAddStream(320, 160)
    pieces = [stream.push(framed[:, a:b]) for a, b in ((0, 1), (1, 1), (1, 6), (6, 13))]
    assert torch.equal(torch.cat(pieces + [stream.pending], dim=-1), whole)


# --- the masking base ----------------------------------------------------------------------------

class ConstantMask(MaskingDenoiser):
    """The tiny masking model of these tests: a constant mask (identity at 1)."""

    def __init__(self, gain: float = 1.0, n_fft: int = 1024, hop: int = 512):
        super().__init__(n_fft=n_fft, hop=hop)
        self.save_hyperparameters()

    def estimate(self, features: SpectralFeatures, **conditions) -> torch.Tensor:
        return torch.full_like(features.magnitude, self.hparams.gain)


class SpectralSubtraction(MaskingDenoiser):
    """A nonlinear clean-magnitude estimate, frame by frame: what exact chunking must survive."""

    estimates = "magnitude"

    def estimate(self, features: SpectralFeatures, **conditions) -> torch.Tensor:
        return (features.magnitude - 0.5).clamp_min(0.0)


def test_masking_denoiser_identity_mask_gives_the_input_back_and_half_mask_halves_it(speech_rows):
    x = speech_rows[1].float()  # [3, T], T not a multiple of the hop
    assert (ConstantMask(1.0)(x) - x).abs().max() < 1e-6
    assert (ConstantMask(0.5)(x) - 0.5 * x).abs().max() < 1e-6
    model = ConstantMask(0.5, n_fft=800, hop=400)
    assert model.hop_samples == 400 and model.context_samples == 799
    assert (model(x) - 0.5 * x).abs().max() < 1e-6
    # forward is the three public steps
    features = model.features(x)
    assert features.magnitude.shape == (3, math.ceil((x.shape[-1] + 400) / 400), 401)
    assert torch.equal(model.synthesis(model.estimate(features), features), model(x))


def test_masking_denoiser_declares_the_context_that_makes_chunks_exact(speech_rows):
    model = SpectralSubtraction(n_fft=512, hop=128)
    x = speech_rows[0, 0].float()
    whole = model(x)
    context, hop = model.context_samples, model.hop_samples
    assert (context, hop) == (511, 128)
    start = 40 * hop  # a chunk on the frame grid, with its context each side
    inner = slice(start + context, start + context + 3001)
    chunk = model(x[start:inner.stop + context])
    assert (chunk[context:context + 3001] - whole[inner]).abs().max() < 1e-6
    # the test can fail: off the frame grid, or with less context, the chunk differs
    off_grid = model(x[start + 5:inner.stop + context])
    assert (off_grid[context - 5:context - 5 + 3001] - whole[inner]).abs().max() > 1e-4
    less = model(x[start + 2 * hop:inner.stop + context])  # on the grid, but 256 samples of context fewer
    assert (less[context - 2 * hop:context - 2 * hop + 3001] - whole[inner]).abs().max() > 1e-4


def test_masking_denoiser_refuses_an_unknown_estimate_kind():
    with pytest.raises(TypeError, match="estimates must be one of 'mask', 'magnitude'"):
        type("Phase", (MaskingDenoiser,), {"estimates": "phase"})


def test_importing_the_stft_front_end_loads_no_lightning_and_no_model():
    code = ("import sys, zoo.frontends.stft; "
            "print(sorted(m for m in ('lightning', 'zoo.models', 'zoo.registry', 'zoo.module', 'scipy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
