"""What users hand ``enhance`` and ``enhance_file``, valid or not, and what they get back.

Every signal is real speech (VoiceBank-DEMAND p232_013, from ``$ZOO_DATA``); stereo, 6-channel,
other sample rates, integer PCM, NaNs, clipping and broken files are all built from it inside
``tmp_path``.
"""
from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

import zoo.audio
from conftest import EXAMPLE_NOISY, read_example
from zoo.audio import AudioError, AudioFileError

RATE = 16000
OTHER_RATES = [8000, 22050, 44100, 48000]
QUANTUM = {"PCM_16": 1 / 32768, "PCM_24": 1 / 2**23, "FLOAT": 0.0}


def resample(wave: np.ndarray, orig: int, new: int) -> np.ndarray:
    return AF.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), orig, new).numpy()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def error_ratio(estimate: np.ndarray, noisy: np.ndarray, clean: np.ndarray) -> float:
    """Residual error energy of ``estimate`` relative to that of the noisy input (< 1: less noise)."""
    estimate, noisy, clean = (np.asarray(x, np.float64) for x in (estimate, noisy, clean))
    return float(((estimate - clean) ** 2).sum() / ((noisy - clean) ** 2).sum())


def real_channels(noisy: np.ndarray, clean: np.ndarray, channels: int, seconds: float = 1.5) -> np.ndarray:
    """[C, T] float32 of distinct real signals: noisy and clean speech, shifted and scaled per channel."""
    frames = int(seconds * RATE)
    sources = [noisy, clean]
    rows = [np.roll(sources[c % 2], 5000 * c)[:frames] * (1.0 - 0.1 * c) for c in range(channels)]
    return np.stack(rows).astype(np.float32)


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


def clip_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "clipped" in str(w.message)]


@pytest.fixture(scope="module")
def enhanced_noisy(wiener_model) -> np.ndarray:
    """``enhance`` of the real noisy example at 16 kHz, float32: the reference other paths must match."""
    return wiener_model.enhance(read_example(EXAMPLE_NOISY), RATE)


# ---- empty, silent and non-finite input ----------------------------------------------------


@pytest.mark.parametrize("rate", [RATE, 44100])
@pytest.mark.parametrize(
    "wave",
    [np.zeros(0, np.float32), np.zeros((2, 0), np.float32), np.zeros(0, np.int16), torch.zeros(0), torch.zeros(1, 0)],
    ids=["numpy-1d", "numpy-stereo", "numpy-int16", "torch-1d", "torch-2d"],
)
def test_empty_array_is_refused(wiener_model, wave, rate):
    with pytest.raises(AudioError, match=r"is empty \(0 samples\): there is nothing to enhance"):
        wiener_model.enhance(wave, rate)


def test_zero_frame_wav_is_refused(wiener_model, tmp_path):
    src = tmp_path / "no_samples.wav"
    sf.write(src, np.zeros(0, np.float32), RATE, subtype="PCM_16")
    assert sf.info(str(src)).frames == 0 and src.stat().st_size > 0  # a valid header, no data
    with pytest.raises(AudioFileError, match=r"holds no samples \(0 frames\)") as info:
        wiener_model.enhance_file(src, tmp_path / "out" / "enhanced.wav")
    assert str(src) in str(info.value)
    assert listing(tmp_path) == ["no_samples.wav"]


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
@pytest.mark.parametrize("rate", [RATE, 44100])
def test_all_zero_audio_gives_silence(wiener_model, rate, dtype):
    wave = np.zeros((2, rate // 2), dtype)  # half a second of digital silence, stereo
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = wiener_model.enhance(wave, rate)
    assert out.dtype == dtype and out.shape == wave.shape
    assert np.all(np.isfinite(out.astype(np.float64)))
    assert np.all(out == 0)
    assert clip_warnings(record) == []


def test_all_zero_file_gives_silent_file(wiener_model, tmp_path):
    src, dst = tmp_path / "silence.wav", tmp_path / "silence_out.wav"
    sf.write(src, np.zeros((RATE, 2), np.int16), RATE, subtype="PCM_16")
    wiener_model.enhance_file(src, dst)
    out, rate = sf.read(dst, dtype="int16", always_2d=True)
    assert rate == RATE and out.shape == (RATE, 2) and np.all(out == 0)


@pytest.mark.parametrize("container", ["numpy", "torch"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_samples_in_stereo_array_name_count_and_first_position(wiener_model, noisy_speech, bad, container):
    wave = np.stack([noisy_speech, noisy_speech[::-1]])
    wave[1, 12345] = bad
    wave[1, 50000] = bad
    wave = torch.from_numpy(wave) if container == "torch" else wave
    with pytest.raises(AudioError) as info:
        wiener_model.enhance(wave, RATE)
    message = str(info.value)
    assert "2 NaN or infinite samples" in message
    assert "channel 1, sample 12345" in message
    assert "nan_to_num" in message  # says how to repair it


@pytest.mark.parametrize("rate", [RATE, 44100])
def test_nan_in_mono_array_at_any_rate_names_input_position(wiener_model, noisy_speech, rate):
    wave = noisy_speech if rate == RATE else resample(noisy_speech, RATE, rate)
    wave[777] = np.nan
    with pytest.raises(AudioError, match=r"contains 1 NaN or infinite samples \(first at channel 0, sample 777\)"):
        wiener_model.enhance(wave, rate)


def test_nan_in_float_wav_file_is_refused_and_writes_nothing(wiener_model, noisy_speech, tmp_path):
    noisy_speech[40000] = np.nan
    src = tmp_path / "with_nan.wav"
    sf.write(src, noisy_speech, RATE, subtype="FLOAT")
    assert np.isnan(sf.read(src, dtype="float32")[0][40000])
    before = src.read_bytes()
    with pytest.raises(AudioError) as info:
        wiener_model.enhance_file(src, tmp_path / "out" / "enhanced.wav")
    message = str(info.value)
    assert str(src) in message
    assert "1 NaN or infinite samples" in message and "sample 40000" in message
    assert listing(tmp_path / "out") == []  # no partial output, no stray temporary file
    assert src.read_bytes() == before


def test_nan_position_in_file_is_absolute_when_read_in_chunks(wiener_model, noisy_speech, tmp_path):
    """Read in 1 s blocks, the NaN at sample 40000 sits at 8000 within its block; users need 40000."""
    noisy_speech[40000] = np.nan
    src = tmp_path / "with_nan.wav"
    sf.write(src, noisy_speech, RATE, subtype="FLOAT")
    with pytest.raises(AudioError) as info:
        wiener_model.enhance_file(src, tmp_path / "out" / "enhanced.wav", chunk_seconds=1.0)
    assert re.search(r"\bsample 40000\b", str(info.value)), str(info.value)
    assert listing(tmp_path / "out") == []


# ---- integer PCM and containers ------------------------------------------------------------


@pytest.mark.parametrize("rate", [RATE, 48000])
def test_int16_array_gives_int16_within_2_lsb_of_float_path(wiener_model, noisy_speech, rate):
    speech = noisy_speech if rate == RATE else resample(noisy_speech, RATE, rate)
    pcm = np.round(np.clip(speech, -1, 1) * 32767).astype(np.int16)
    out = wiener_model.enhance(pcm, rate)
    assert out.dtype == np.int16 and out.shape == pcm.shape
    reference = wiener_model.enhance(pcm.astype(np.float32) / 32768, rate)
    expected = np.clip(np.round(reference.astype(np.float64) * 32768), -32768, 32767)
    assert np.abs(out.astype(np.int64) - expected).max() <= 2
    assert correlation(out, pcm) < 0.98  # it was enhanced, not passed through


def test_int32_array_gives_int32_close_to_float_path(wiener_model, noisy_speech):
    pcm = (np.round(noisy_speech * 32767).astype(np.int32)) << 16
    out = wiener_model.enhance(pcm, RATE)
    assert out.dtype == np.int32 and out.shape == pcm.shape
    reference = wiener_model.enhance(pcm.astype(np.float64).astype(np.float32) / 2**31, RATE)
    expected = np.round(reference.astype(np.float64) * 2**31)
    assert np.abs(out.astype(np.float64) - expected).max() <= 2 * 2**16  # 2 LSB at 16 bits
    assert np.abs(out).max() > 2**28  # full-scale int32, not int16 values in an int32 array


def test_float64_array_gives_float64(wiener_model, noisy_speech, enhanced_noisy):
    out = wiener_model.enhance(noisy_speech.astype(np.float64), RATE)
    assert out.dtype == np.float64 and out.shape == noisy_speech.shape
    assert np.abs(out - enhanced_noisy).max() < 1e-5


TORCH_CASES = [
    (torch.float32, 1.0, 1e-6),
    (torch.float64, 1.0, 1e-5),
    (torch.float16, 1.0, 1e-2),
    (torch.int16, 32768.0, 3 / 32768),
    (torch.int32, 2.0**31, 1e-5),
]


@pytest.mark.parametrize("shape", ["1d", "stereo"])
@pytest.mark.parametrize("dtype, scale, tolerance", TORCH_CASES, ids=lambda v: str(v).replace("torch.", ""))
def test_torch_tensor_in_gives_torch_tensor_out_with_same_dtype(wiener_model, noisy_speech, enhanced_noisy, dtype,
                                                                 scale, tolerance, shape):
    if shape == "1d":
        speech, reference = noisy_speech, enhanced_noisy
    else:  # the second channel is the same speech: its result must be the same too
        speech, reference = np.stack([noisy_speech, noisy_speech]), np.stack([enhanced_noisy, enhanced_noisy])
    tensor = torch.from_numpy(speech)
    tensor = torch.round(tensor * (scale - 1)).to(dtype) if scale != 1.0 else tensor.to(dtype)
    out = wiener_model.enhance(tensor, RATE)
    assert isinstance(out, torch.Tensor)
    assert out.dtype == dtype and out.shape == tensor.shape and out.device == tensor.device
    assert (out.double() / scale - torch.from_numpy(reference).double()).abs().max() <= tolerance


# ---- multichannel ------------------------------------------------------------------------


@pytest.mark.parametrize("channels, rate", [(2, RATE), (2, 44100), (6, RATE), (6, 48000)])
def test_multichannel_array_each_channel_is_enhanced_on_its_own(wiener_model, noisy_speech, clean_speech,
                                                                channels, rate):
    wave = real_channels(noisy_speech, clean_speech, channels)
    if rate != RATE:
        wave = resample(wave, RATE, rate)
    out = wiener_model.enhance(wave, rate)
    assert out.shape == wave.shape and out.dtype == np.float32
    for c in range(channels):
        alone = wiener_model.enhance(np.ascontiguousarray(wave[c]), rate)
        assert np.abs(out[c] - alone).max() < 1e-5, f"channel {c} differs from enhancing it alone"
    assert np.abs(out[0] - out[1]).max() > 0.01  # channels stay distinct


@pytest.mark.parametrize(
    "channels, rate, suffix, subtype",
    [(2, RATE, "wav", "PCM_16"), (6, RATE, "flac", "PCM_24"), (2, 44100, "wav", "FLOAT"), (6, 48000, "wav", "PCM_16")],
)
def test_multichannel_file_keeps_format_and_enhances_each_channel_alone(wiener_model, noisy_speech, clean_speech,
                                                                        tmp_path, channels, rate, suffix, subtype):
    wave = real_channels(noisy_speech, clean_speech, channels)
    if rate != RATE:
        wave = resample(wave, RATE, rate)
    src, dst = tmp_path / f"input.{suffix}", tmp_path / "out" / f"enhanced.{suffix}"
    sf.write(src, wave.T, rate, subtype=subtype)
    before = src.read_bytes()
    assert Path(wiener_model.enhance_file(src, dst)) == dst
    info_in, info_out = sf.info(str(src)), sf.info(str(dst))
    assert (info_out.samplerate, info_out.channels, info_out.frames, info_out.format, info_out.subtype) == (
        rate, channels, info_in.frames, info_in.format, subtype)
    written, _ = sf.read(dst, dtype="float32", always_2d=True)
    read_back, _ = sf.read(src, dtype="float32", always_2d=True)
    for c in range(channels):
        alone = wiener_model.enhance(np.ascontiguousarray(read_back[:, c]), rate)
        assert np.abs(written[:, c] - alone).max() <= QUANTUM[subtype] + 1e-5, f"channel {c}"
    assert src.read_bytes() == before
    assert listing(tmp_path / "out") == [f"enhanced.{suffix}"]


# ---- sample rates ------------------------------------------------------------------------


@pytest.mark.parametrize("rate", OTHER_RATES)
def test_other_sample_rate_array_is_enhanced_at_its_own_rate(wiener_model, noisy_speech, clean_speech, enhanced_noisy,
                                                             rate):
    noisy, clean = resample(noisy_speech, RATE, rate), resample(clean_speech, RATE, rate)
    out = wiener_model.enhance(noisy, rate)
    assert out.shape == noisy.shape and out.dtype == np.float32 and np.all(np.isfinite(out))
    at_16k = resample(enhanced_noisy, RATE, rate)[: len(noisy)]
    assert correlation(out, at_16k) > 0.99  # the same enhancement as at the model's rate
    assert correlation(out, noisy) < 0.98  # not the input passed through
    assert error_ratio(out, noisy, clean) < 0.5  # closer to the clean reference than the input was


@pytest.mark.parametrize("rate", OTHER_RATES)
def test_other_sample_rate_file_keeps_rate_length_and_format(wiener_model, noisy_speech, clean_speech, tmp_path, rate):
    src, dst = tmp_path / f"noisy_{rate}.wav", tmp_path / f"enhanced_{rate}.wav"
    sf.write(src, resample(noisy_speech, RATE, rate), rate, subtype="PCM_16")
    wiener_model.enhance_file(src, dst)
    info_in, info_out = sf.info(str(src)), sf.info(str(dst))
    assert (info_out.samplerate, info_out.frames, info_out.channels, info_out.subtype) == (
        rate, info_in.frames, 1, "PCM_16")
    noisy, _ = sf.read(src, dtype="float32")
    written, _ = sf.read(dst, dtype="float32")
    assert np.abs(written - wiener_model.enhance(noisy, rate)).max() <= 1 / 32768 + 1e-5  # = the array path
    clean = resample(clean_speech, RATE, rate)[: len(noisy)]
    assert error_ratio(written, noisy, clean) < 0.5


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
def test_output_length_equals_input_length_for_any_length(wiener_model, noisy_speech, rate):
    speech = resample(noisy_speech[:RATE], RATE, rate)
    for length in [1, 7, 1001, 1002, 1003, len(speech) - 1]:
        out = wiener_model.enhance(speech[:length], rate)
        assert out.shape == (length,), (rate, length, out.shape)
        assert np.all(np.isfinite(out))


# ---- layout, sample rate and dtype errors -----------------------------------------------


@pytest.mark.parametrize("container", ["numpy", "torch"])
@pytest.mark.parametrize("channels", [2, 6])
def test_time_major_array_is_refused_with_pass_wave_t(wiener_model, noisy_speech, clean_speech, channels, container):
    wave = np.ascontiguousarray(real_channels(noisy_speech, clean_speech, channels).T)  # [T, C]
    frames = wave.shape[0]
    wave = torch.from_numpy(wave) if container == "torch" else wave
    with pytest.raises(AudioError) as info:
        wiener_model.enhance(wave, RATE)
    message = str(info.value)
    assert f"({frames}, {channels})" in message
    assert "[time, channels]" in message and "channels-first" in message and "pass wave.T" in message


def test_three_dimensional_array_is_refused(wiener_model, noisy_speech):
    with pytest.raises(AudioError, match=r"has shape \(1, 1, 63095\); pass 1-D \[time\] or channels-first"):
        wiener_model.enhance(noisy_speech[None, None], RATE)


@pytest.mark.parametrize("rate", [0, -16000, 16000.5, "16000", None, True, float("nan"), float("inf")])
def test_bad_sample_rate_is_refused(wiener_model, noisy_speech, rate):
    with pytest.raises(AudioError, match=r"sample_rate must be a positive whole number of Hz \(e\.g\. 16000\), got"):
        wiener_model.enhance(noisy_speech, rate)


@pytest.mark.parametrize("rate", [np.int64(16000), np.int32(16000), 16000.0, np.float64(16000.0)],
                         ids=["np.int64", "np.int32", "float", "np.float64"])
def test_whole_number_sample_rate_of_other_types_is_accepted(wiener_model, noisy_speech, rate):
    out = wiener_model.enhance(noisy_speech, rate)
    np.testing.assert_array_equal(out, wiener_model.enhance(noisy_speech, 16000))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int64, np.complex64, np.bool_])
def test_unsupported_numpy_dtype_is_refused(wiener_model, noisy_speech, dtype):
    wave = (noisy_speech * 100).astype(dtype)
    with pytest.raises(AudioError, match=rf"has dtype {np.dtype(dtype)}; pass float samples \(float16, bfloat16, float32 "
                                         r"or float64, full scale = 1\.0\) or signed integer PCM \(int8, int16 or int32\)"):
        wiener_model.enhance(wave, RATE)


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool, torch.complex64])
def test_unsupported_torch_dtype_is_refused(wiener_model, noisy_speech, dtype):
    wave = (torch.from_numpy(noisy_speech) * 100).to(dtype)
    with pytest.raises(AudioError, match=re.escape(f"has dtype {dtype}; pass float samples (float16, bfloat16, float32 "
                                                   "or float64, full scale = 1.0) or signed integer PCM (int8, int16 or int32)")):
        wiener_model.enhance(wave, RATE)


@pytest.mark.parametrize("wave", ["noisy.wav", 0.5, None], ids=["str", "float", "None"])
def test_non_array_input_is_refused(wiener_model, wave):
    with pytest.raises(AudioError, match=r"must be a numpy array or torch tensor, not"):
        wiener_model.enhance(wave, RATE)


# ---- clipping ----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*exceeded full scale and were clipped for integer output")
@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_clipped_input_warns_but_is_enhanced(wiener_model, noisy_speech, dtype):
    clipped = np.clip(noisy_speech * 20, -1.0, 1.0)
    at_full_scale = int((np.abs(clipped) >= 0.999).sum())
    wave = clipped if dtype == np.float32 else np.round(clipped * 32767).astype(np.int16)
    with pytest.warns(UserWarning, match="looks clipped") as record:
        out = wiener_model.enhance(wave, RATE)
    assert any(f"{at_full_scale} samples at full scale" in message for message in clip_warnings(record))
    assert out.dtype == dtype and out.shape == wave.shape
    scale = 1.0 if dtype == np.float32 else 32768.0
    as_float = out.astype(np.float64) / scale
    assert np.all(np.isfinite(as_float)) and np.abs(as_float - clipped).max() > 0.05  # processed, not refused


def test_real_speech_does_not_warn_about_clipping(wiener_model, noisy_speech):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        wiener_model.enhance(noisy_speech, RATE)
    assert clip_warnings(record) == []


# ---- broken, missing and unusable files ------------------------------------------------


def _data_offset(raw: bytes) -> int:
    return raw.find(b"data") + 8


def make_bad_file(kind: str, folder: Path, noisy: np.ndarray) -> tuple[Path, str]:
    """A broken input of the given kind, built from real speech, and the message expected for it."""
    if kind == "missing":
        return folder / "missing.wav", r"no such file; check the path"
    if kind == "folder":
        (folder / "a_folder.wav").mkdir()
        return folder / "a_folder.wav", r"is a folder; pass an audio file"
    if kind == "zero-bytes":
        (folder / "zero.wav").write_bytes(b"")
        return folder / "zero.wav", r"is an empty file \(0 bytes\): not audio"
    if kind == "text-renamed":
        (folder / "notes.wav").write_text("Recording notes: p232_013, take 2, noisy café.\n" * 40)
        return folder / "notes.wav", r"could not be read as audio .*convert it"
    if kind == "garbage":
        (folder / "garbage.wav").write_bytes(np.random.default_rng(0).bytes(6000))
        return folder / "garbage.wav", r"could not be read as audio .*convert it"
    if kind.startswith("truncated-wav"):
        subtype = kind.rsplit("-", 1)[1].upper().replace("PCM16", "PCM_16")
        full = folder / "full.wav"
        sf.write(full, noisy, RATE, subtype=subtype)
        raw = full.read_bytes()
        full.unlink()
        declared = int.from_bytes(raw[_data_offset(raw) - 4:_data_offset(raw)], "little")
        cut = len(raw) * 6 // 10
        (folder / "truncated.wav").write_bytes(raw[:cut])
        present = cut - _data_offset(raw)
        return folder / "truncated.wav", rf"is truncated: its header announces {declared} bytes .* only {present} "
    if kind == "truncated-flac":
        full = folder / "full.flac"
        sf.write(full, noisy, RATE, subtype="PCM_16")
        raw = full.read_bytes()
        full.unlink()
        (folder / "truncated.flac").write_bytes(raw[: len(raw) // 2])
        return folder / "truncated.flac", r"truncated|corrupt"
    if kind == "header-only":
        sf.write(folder / "full.wav", noisy, RATE, subtype="PCM_16")
        raw = (folder / "full.wav").read_bytes()
        (folder / "full.wav").unlink()
        (folder / "header_only.wav").write_bytes(raw[:_data_offset(raw)])
        return folder / "header_only.wav", r"no samples \(0 frames\)|truncated"
    raise ValueError(kind)


BAD_FILES = ["missing", "folder", "zero-bytes", "text-renamed", "garbage", "truncated-wav-pcm16",
             "truncated-wav-float", "truncated-flac", "header-only"]


@pytest.mark.parametrize("kind", BAD_FILES)
def test_unusable_file_raises_audio_file_error_and_writes_nothing(wiener_model, noisy_speech, tmp_path, kind):
    inputs = tmp_path / "in"
    inputs.mkdir()
    src, expected = make_bad_file(kind, inputs, noisy_speech)
    before = {name: (inputs / name).read_bytes() for name in listing(inputs) if (inputs / name).is_file()}
    out = tmp_path / "out"
    with pytest.raises(AudioFileError) as info:
        wiener_model.enhance_file(src, out / "enhanced.wav")
    message = str(info.value)
    assert str(src) in message  # says which file
    assert re.search(expected, message), message
    assert listing(out) == []  # no output, no partial file, no stray temporary
    assert {name: (inputs / name).read_bytes() for name in before} == before


def test_unknown_output_extension_is_refused_before_writing(wiener_model, tmp_path):
    with pytest.raises(AudioFileError, match=r"unknown audio extension '\.mp3'; use \.wav, \.flac"):
        wiener_model.enhance_file(EXAMPLE_NOISY, tmp_path / "out" / "enhanced.mp3")
    assert listing(tmp_path / "out") == []


@pytest.mark.parametrize("how", ["same-path", "dot-segment", "symlink", "hardlink"])
def test_enhance_file_refuses_to_overwrite_its_input(wiener_model, tmp_path, how):
    src = tmp_path / "noisy.wav"
    shutil.copyfile(EXAMPLE_NOISY, src)
    before, mtime = src.read_bytes(), src.stat().st_mtime_ns
    if how == "same-path":
        dst = src
    elif how == "dot-segment":
        dst = tmp_path / "." / "noisy.wav"
    elif how == "symlink":
        dst = tmp_path / "link.wav"
        dst.symlink_to(src)
    else:
        dst = tmp_path / "hard.wav"
        os.link(src, dst)
    with pytest.raises(AudioFileError, match="refusing to overwrite the input"):
        wiener_model.enhance_file(src, dst)
    assert src.read_bytes() == before and src.stat().st_mtime_ns == mtime
    assert listing(tmp_path) == sorted({"noisy.wav", dst.name})


@pytest.mark.parametrize("existing", [False, True], ids=["new-output", "existing-output"])
def test_failed_write_leaves_no_partial_file(wiener_model, tmp_path, monkeypatch, existing):
    """The disk fills up after the first block: nothing is left under the output name."""
    src = tmp_path / "noisy.wav"
    shutil.copyfile(EXAMPLE_NOISY, src)
    out = tmp_path / "out"
    dst = out / "enhanced.wav"
    if existing:
        out.mkdir()
        dst.write_bytes(b"an earlier result the user wants to keep")
    writes = []
    real_write = sf.SoundFile.write

    def failing_write(self, data):
        writes.append(len(data))
        if len(writes) == 2:
            raise OSError(28, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", failing_write)
    with pytest.raises(OSError, match="No space left on device"):
        wiener_model.enhance_file(src, dst, chunk_seconds=1.0, overwrite=True)  # replacing: the existing file stays until the end
    assert len(writes) == 2 and writes[0] > 0  # a first block had really been written somewhere
    assert listing(out) == (["enhanced.wav"] if existing else [])
    if existing:
        assert dst.read_bytes() == b"an earlier result the user wants to keep"


def test_nan_in_a_later_block_leaves_no_partial_file(wiener_model, noisy_speech, tmp_path):
    noisy_speech[3 * RATE + 100] = np.nan  # in the 4th one-second block: earlier blocks are written first
    src = tmp_path / "late_nan.wav"
    sf.write(src, noisy_speech, RATE, subtype="FLOAT")
    out = tmp_path / "out"
    with pytest.raises(AudioError, match="NaN or infinite"):
        wiener_model.enhance_file(src, out / "enhanced.wav", chunk_seconds=1.0)
    assert listing(out) == []
