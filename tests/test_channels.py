"""Models that take several channels at once (``input_channels`` = K > 1): [K, T] in, mono [T] out.

The test model is a two-microphone delay-and-sum beamformer: the second microphone hears the
talker ``DELAY`` samples after the first, so ``y[t] = (x1[t] + x2[t + DELAY]) / 2`` adds the speech
in phase and two independent noises out of phase on average (+3 dB SNR). The recordings are real
speech (VoiceBank-DEMAND clean) and real noise (NOISEX-92 factory and babble, a different stretch at
each microphone), written to ``tmp_path`` as 2-channel WAV files.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

import zoo
from zoo.audio import AudioError, resample
from zoo.cli import main
from zoo.data.files import DATA_ROOT
from zoo.evaluate import EvaluationInputError, evaluate, markdown_summary
from zoo.module import DenoiserModule

from conftest import VOICEBANK_SUBSET

DELAY = 3
RATE = 16000
NOISE = DATA_ROOT / "noise" / "noisex"


class DelayAndSum(DenoiserModule):
    """Two microphones, the second ``delay`` samples behind the first: their aligned mean."""

    trainable = False
    input_channels = 2

    def __init__(self, delay: int = DELAY):
        super().__init__()
        self.save_hyperparameters()
        self.delay = delay
        self.context_samples = delay  # output t reads x2[t + delay]

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        assert wave.dim() == 3 and wave.shape[1] == 2, wave.shape  # [B, K, T] from the streams
        later = torch.nn.functional.pad(wave[:, 1, self.delay:], (0, self.delay))
        return (wave[:, 0] + later) / 2


def two_microphones(utterance: str, snr_db: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """([2, T] noisy at two microphones, [T] clean speech at the first) at 16 kHz, float32."""
    clean, rate = sf.read(str(VOICEBANK_SUBSET / "clean_testset_wav" / f"{utterance}.wav"), dtype="float32")
    assert rate == RATE
    heard = [clean, np.concatenate([np.zeros(DELAY, np.float32), clean[:-DELAY]])]
    noisy = []
    for microphone, (name, start) in enumerate([("factory1", 10_000), ("babble", 200_000)]):
        noise, _ = sf.read(str(NOISE / f"{name}.flac"), dtype="float32", start=start, frames=clean.size)
        noise *= np.sqrt(np.mean(clean ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
        noisy.append(heard[microphone] + noise)
    return np.stack(noisy).astype(np.float32), clean


def snr_db(estimate, clean) -> float:
    estimate, clean = np.asarray(estimate, np.float64), np.asarray(clean, np.float64)
    return float(10 * np.log10(np.sum(clean ** 2) / np.sum((estimate - clean) ** 2)))


@pytest.fixture(scope="module")
def recording():
    return two_microphones("p232_013")


def test_enhance_takes_k_channels_and_returns_mono(recording):
    noisy, clean = recording
    model = DelayAndSum().eval()
    enhanced = model.enhance(noisy, RATE)
    assert isinstance(enhanced, np.ndarray) and enhanced.shape == clean.shape and enhanced.dtype == np.float32
    expected = (noisy[0] + np.pad(noisy[1, DELAY:], (0, DELAY))) / 2
    assert np.abs(enhanced - expected).max() < 1e-6
    assert snr_db(enhanced, clean) > snr_db(noisy[0], clean) + 2.0  # two microphones beat one
    as_int16 = model.enhance((noisy * 32767).astype(np.int16), RATE)
    assert as_int16.dtype == np.int16 and as_int16.shape == clean.shape
    silence = model.enhance(torch.zeros(2, 4000), RATE)
    assert silence.shape == (4000,) and not silence.any()


def test_enhance_refuses_another_channel_count(recording):
    noisy, _ = recording
    model = DelayAndSum().eval()
    frames = noisy.shape[-1]
    with pytest.raises(AudioError, match=rf"DelayAndSum takes 2 channels at once \(input_channels=2\) and returns "
                                         rf"one, but the input \(shape \[3, {frames}\]\) has 3 channels: pass the 2 "
                                         rf"channels it was made for, channels first \(\[2, time\]\)"):
        model.enhance(np.concatenate([noisy, noisy[:1]]), RATE)
    with pytest.raises(AudioError, match=rf"the input \(shape \[{frames}\]\) has 1 channel: pass the 2 channels"):
        model.enhance(noisy[0], RATE)


@pytest.mark.parametrize("rate, chunk_seconds", [(16000, 0.3001), (44100, 0.4137), (8000, 0.2219)])
def test_chunked_equals_whole(recording, rate, chunk_seconds):
    noisy, _ = recording
    model = DelayAndSum().eval()
    wave = resample(torch.from_numpy(noisy), RATE, rate)
    whole = model.enhance(wave, rate, chunk_seconds=10)
    chunked = model.enhance(wave, rate, chunk_seconds=chunk_seconds)
    assert whole.shape == chunked.shape == (wave.shape[-1],)
    assert (chunked - whole).abs().max() < 1e-6
    if rate == RATE:
        assert (whole - model(wave[None])[0]).abs().max() < 1e-6


def test_enhance_file_writes_mono_from_a_two_channel_file(recording, tmp_path):
    noisy, clean = recording
    src = tmp_path / "array.wav"
    sf.write(str(src), noisy.T, RATE, subtype="PCM_16")
    model = DelayAndSum().eval()
    dst = model.enhance_file(src, tmp_path / "out.wav", chunk_seconds=0.7)
    info = sf.info(str(dst))
    assert (info.channels, info.samplerate, info.frames, info.subtype) == (1, RATE, noisy.shape[-1], "PCM_16")
    written, _ = sf.read(str(dst), dtype="float32")
    stored, _ = sf.read(str(src), dtype="float32", always_2d=True)
    assert np.abs(written - model.enhance(stored.T, RATE)).max() <= 1 / 32768 + 1e-7  # one 16-bit step
    assert snr_db(written, clean) > snr_db(stored[:, 0], clean) + 2.0
    three = tmp_path / "three.wav"
    sf.write(str(three), np.concatenate([noisy, noisy[:1]]).T, RATE, subtype="PCM_16")
    with pytest.raises(AudioError, match=rf"DelayAndSum takes 2 channels at once .* but {three} has 3 channels"):
        model.enhance_file(three, tmp_path / "three-out.wav")
    assert not (tmp_path / "three-out.wav").exists()


def test_the_card_line_states_the_channels():
    assert DelayAndSum().streaming_summary() == (
        "2 input channels at once, one (mono) output; streaming: overlap (3 samples of context each side at 16000 "
        "Hz): chunked output equals whole-file output")


@pytest.fixture(scope="module")
def array_data(tmp_path_factory):
    """Two 2-channel noisy recordings with mono clean references, and the saved beamformer."""
    root = tmp_path_factory.mktemp("array")
    (root / "noisy").mkdir(), (root / "clean").mkdir()
    for utterance in ("p232_013", "p232_001"):
        noisy, clean = two_microphones(utterance)
        sf.write(str(root / "noisy" / f"{utterance}.wav"), noisy.T, RATE, subtype="FLOAT")
        sf.write(str(root / "clean" / f"{utterance}.wav"), clean, RATE, subtype="FLOAT")
    DelayAndSum().save_pretrained(root / "delay-and-sum")
    return root


def test_evaluate_scores_multichannel_noisy_against_a_mono_reference(array_data):
    spec = f"folders:{array_data / 'noisy'}:{array_data / 'clean'}"
    beamformer = str(array_data / "delay-and-sum")
    evaluation = evaluate([beamformer, "wiener"], spec, workers=1, progress=False)
    means = evaluation.means()
    assert evaluation.systems == ["noisy", beamformer, "wiener"] and len(evaluation.rows) == 6
    # the unprocessed input is scored on channel 1 (its SNR: the 5 dB it was mixed at), the beamformer on both
    noisy_snr = [r["snr"] for r in evaluation.rows if r["system"] == "noisy"]
    assert noisy_snr == pytest.approx([5.0, 5.0], abs=0.01)
    assert means[beamformer]["snr"] > means["noisy"]["snr"] + 2.0
    summary = evaluation.summary()
    assert summary["channels"] == {
        "noisy": [2], "reference_channel": 1,
        "rule": f"the unprocessed input and single-channel systems are scored on channel 1 of the noisy files; "
                f"{beamformer} takes all 2"}
    assert (f"Multichannel noisy input (2 channels): the unprocessed input and single-channel systems are scored on "
            f"channel 1 of the noisy files; {beamformer} takes all 2.") in markdown_summary(summary)
    second = evaluate(["noisy"], spec, workers=1, progress=False, reference_channel=2)
    assert [r["snr"] for r in second.rows] != pytest.approx(noisy_snr, abs=0.01)  # the other microphone


def test_evaluate_refuses_channels_a_system_cannot_take(array_data, tmp_path, capsys):
    beamformer = str(array_data / "delay-and-sum")
    mono = f"folders:{VOICEBANK_SUBSET / 'noisy_testset_wav'}:{VOICEBANK_SUBSET / 'clean_testset_wav'}"
    with pytest.raises(EvaluationInputError, match=rf"{beamformer} takes 2 channels at once \(input_channels=2\), "
                                                   r"but the data has 1-channel noisy files"):
        evaluate([beamformer], mono, workers=1, limit=2, progress=False)
    spec = f"folders:{array_data / 'noisy'}:{array_data / 'clean'}"
    assert main(["eval", "--model", "wiener", "--data", spec, "--reference-channel", "3", "--out", str(tmp_path)]) == 2
    assert "reference channel 3 does not exist in 2-channel noisy files: choose one of 1..2" in capsys.readouterr().err
    stereo_clean = f"folders:{array_data / 'noisy'}:{array_data / 'noisy'}"
    with pytest.raises(EvaluationInputError, match="has 2 channels; evaluation scores against one clean channel"):
        evaluate(["noisy"], stereo_clean, workers=1, progress=False)
    assert json.loads((array_data / "delay-and-sum" / "config.json").read_text())["architecture"] == "DelayAndSum"
    assert zoo.load(beamformer).input_channels == 2
