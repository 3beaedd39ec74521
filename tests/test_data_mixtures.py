"""Mixing real speech with real and generated noise: levels, SNRs, reproducibility, generated
noises, the user's own noise folder, bad data and semi-supervised batches."""
from __future__ import annotations

import math
import shutil

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.fft import next_fast_len
from scipy.signal import welch

from zoo.audio import AudioFileError, read_audio
from zoo.data import Mixtures
from zoo.data.files import DATA_ROOT
from zoo.data.mixtures import REFERENCE_LEVEL_DBFS
from zoo.data.noises import (BABBLE_SPEECH, P56_HANGOVER, P56_MARGIN_DB, P56_THRESHOLDS, P56_TIME_CONSTANT,
                             active_level, average_magnitude_spectrum, babble_noise, brown_noise, level_normalised,
                             loop_crop, magnitude_sum, pink_noise, speech_shaped_noise, tilt_spectrum,
                             white_noise)
from zoo.data.semisupervised import SemiSupervisedMixtures
from zoo.module import DenoiserModule, SupervisedModelError
from zoo.data.splits import TEST_SPEECH, VAL_SPEECH

RATE = 16000
LJ = sorted((DATA_ROOT / "speech/ljspeech").glob("*.flac"))
NOISE = DATA_ROOT / "noise/speech-commands"
SMALL = dict(speech=["speech/ljspeech"], noise=["noise/noisex/white.flac", "noise/speech-commands/running_tap.flac"],
             val_speech=[VAL_SPEECH[0]], val_noise=["noise/noisex/volvo.flac"], crop_seconds=0.5, batch_size=4,
             train_size=8, val_size=8, max_files=12, gain_db=(-10.0, 10.0))


def _speech(i: int = 0) -> np.ndarray:
    return read_audio(LJ[i])[0][0].numpy()


def _db(x) -> float:
    return 10 * math.log10(x)


def _loop_p56(x: np.ndarray, fs: int) -> float:
    """The reference asl_P56 (ITU-T P.56 method B, as in Loizou's toolbox), transcribed sample by
    sample, with its bisection (bin_interp, tolerance 0.5 dB): the active level in dB."""
    x = x.astype(np.float64) / np.abs(x).max()
    g = math.exp(-1 / (fs * P56_TIME_CONSTANT))
    hang_max = math.ceil(fs * P56_HANGOVER)
    c = P56_THRESHOLDS
    a, hang = np.zeros(len(c)), np.full(len(c), hang_max)
    p = q = 0.0
    for sample in np.abs(x):
        p = g * p + (1 - g) * sample
        q = g * q + (1 - g) * p
        for j in range(len(c)):
            if q >= c[j]:
                a[j] += 1
                hang[j] = 0
            elif hang[j] < hang_max:
                a[j] += 1
                hang[j] += 1
            else:
                break
    sq = float(np.sum(x * x))
    adb = 10 * np.log10(sq / np.maximum(a, 1e-300) + 1e-300)
    cdb = 20 * np.log10(c)
    for j in range(1, len(c)):
        if a[j] and adb[j] - cdb[j] <= P56_MARGIN_DB:
            up_count, lw_count, up_thr, lw_thr = adb[j], adb[j - 1], cdb[j], cdb[j - 1]
            mid_count, mid_thr = (up_count + lw_count) / 2, (up_thr + lw_thr) / 2
            while abs(mid_count - mid_thr - P56_MARGIN_DB) > 0.5:
                if mid_count - mid_thr - P56_MARGIN_DB > 0:
                    mid_count, mid_thr = (up_count + mid_count) / 2, (up_thr + mid_thr) / 2
                else:
                    mid_count, mid_thr = (mid_count + lw_count) / 2, (mid_thr + lw_thr) / 2
            return mid_count
    raise AssertionError("no active level")


# ---------------------------------------------------------------------------------------------
# Active speech level


def test_active_level_is_p56_and_ignores_pauses():
    speech = _speech(0)
    level, activity = active_level(speech, RATE)
    crop = speech[: 2 * RATE]
    crop_level, _ = active_level(crop, RATE)
    reference_db = _loop_p56(crop, RATE) + _db(np.abs(crop).max() ** 2)
    assert abs(_db(crop_level) - reference_db) < 0.5  # the reference's own tolerance
    padded = np.concatenate([speech, np.zeros_like(speech)])  # the same speech with as much silence
    padded_level, padded_activity = active_level(padded, RATE)
    assert abs(_db(padded_level) - _db(level)) < 0.3  # the active level ignores the pause ...
    assert _db(np.mean(padded**2)) < _db(np.mean(speech**2)) - 2.9  # ... the plain mean square drops 3 dB
    assert 0.45 < padded_activity < 0.52 and activity > 0.9
    assert abs(_db(active_level(speech * 0.01, RATE)[0]) - (_db(level) - 40)) < 1e-6
    assert active_level(np.zeros(RATE), RATE) == (0.0, 0.0)


# ---------------------------------------------------------------------------------------------
# Mixing


def _check_rows(batch, gain_db=(-10.0, 10.0)):
    """noisy = clean + noise; the SNR drawn, against the active speech level; the gain drawn."""
    for noisy, clean, noise, snr in zip(batch["noisy"], batch["clean"], batch["noise"], batch["snr_db"]):
        assert torch.allclose(noisy, clean + noise, atol=1e-6)
        level, _ = active_level(clean.numpy(), RATE)
        assert abs(_db(level / noise.double().pow(2).mean().item()) - float(snr)) < 0.01
        if gain_db is None:
            assert float(noisy.abs().max()) <= 0.99 + 1e-6
        elif float(noisy.abs().max()) < 0.989:  # not peak-limited: the speech is at -25 dBFS + gain
            assert gain_db[0] - 0.01 <= _db(level) - REFERENCE_LEVEL_DBFS <= gain_db[1] + 0.01
        else:  # peak-limited: scaled down to 0.99, the SNR unchanged
            assert abs(float(noisy.abs().max()) - 0.99) < 1e-6


def test_mixtures_hit_the_drawn_snr_against_active_speech_level():
    data = Mixtures(**{**SMALL, "train_size": 16, "snr_db": (-5.0, 20.0)})
    data.setup("fit")
    batches = list(data.train_dataloader())
    assert [tuple(b["noisy"].shape) for b in batches] == [(4, 8000)] * 4
    assert set(batches[0]) == {"noisy", "clean", "noise", "snr_db", "has_clean"}
    assert batches[0]["has_clean"].dtype == torch.bool and bool(batches[0]["has_clean"].all())
    for batch in batches:
        assert batch["noisy"].dtype == torch.float32 and torch.isfinite(batch["noisy"]).all()
        assert ((batch["snr_db"] >= -5) & (batch["snr_db"] <= 20)).all()
        _check_rows(batch)
    choices = Mixtures(**{**SMALL, "train_size": 24, "snr_db_choices": [0, 5, 10], "gain_db": (-3.0, -3.0)})
    choices.setup("fit")
    snrs = torch.cat([b["snr_db"] for b in choices.train_dataloader()])
    assert set(snrs.tolist()) == {0.0, 5.0, 10.0}
    _check_rows(next(iter(choices.train_dataloader())), gain_db=(-3.0, -3.0))


def _batches(loader):
    return [{k: v.clone() for k, v in b.items()} for b in loader]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_same_seed_same_batches_and_training_draws_change_per_epoch():
    first, second = Mixtures(**SMALL, seed=3), Mixtures(**SMALL, seed=3)
    first.setup("fit")
    second.setup("fit")
    assert _same(_batches(first.val_dataloader()), _batches(second.val_dataloader()))
    assert _same(_batches(first.val_dataloader()), _batches(first.val_dataloader()))  # validation never changes
    loader = first.train_dataloader()
    epoch0, epoch1 = _batches(loader), _batches(loader)
    other = second.train_dataloader()
    assert _same(epoch0, _batches(other)) and _same(epoch1, _batches(other))  # reproducible, epoch by epoch
    assert not torch.equal(epoch0[0]["noisy"], epoch1[0]["noisy"])  # a new epoch, new mixtures
    other.sampler.set_epoch(1)  # what Lightning does at the start of epoch 1
    assert _same(epoch1, _batches(other))
    workers = Mixtures(**SMALL, seed=3, num_workers=2)
    workers.setup("fit")
    assert _same(epoch0, _batches(workers.train_dataloader()))  # worker processes change nothing
    reseeded = Mixtures(**SMALL, seed=4)
    reseeded.setup("fit")
    assert not torch.equal(epoch0[0]["noisy"], _batches(reseeded.train_dataloader())[0]["noisy"])


class _Recorder(L.LightningModule):
    """Records the training batches a Trainer hands it."""

    def __init__(self):
        super().__init__()
        self.weight, self.seen = torch.nn.Parameter(torch.zeros(())), []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch["noisy"].clone())
        return (self.weight * batch["noisy"]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.filterwarnings("ignore:.*(val_dataloader|does not have many workers|is deprecated)")
def test_a_trainer_sees_the_seeded_epochs():
    recorder = _Recorder()
    L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, limit_val_batches=0).fit(recorder, Mixtures(**SMALL, seed=5))
    data = Mixtures(**SMALL, seed=5)
    data.setup("fit")
    loader = data.train_dataloader()
    expected = [batch["noisy"] for _ in range(3) for batch in loader]
    assert len(recorder.seen) == len(expected) == 6
    assert all(torch.equal(a, b) for a, b in zip(recorder.seen, expected))


@pytest.mark.parametrize("name", ["white", "pink", "brown", "speech-shaped", "babble"])
def test_generated_noises_mix_by_name(name):
    data = Mixtures(**{**SMALL, "noise": [f"generated:{name}"], "val_noise": [f"generated:{name}"]})
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    _check_rows(batch)
    assert not torch.equal(batch["noise"][0], batch["noise"][1])
    val = next(iter(data.val_dataloader()))
    _check_rows(val)


def test_babble_talkers_never_train_or_validate():
    data = Mixtures(speech=["speech/librispeech-train-clean-100"], noise=["generated:babble"], max_files=None,
                    crop_seconds=0.25, batch_size=2, train_size=2, val_size=2)
    data.setup("fit")
    talkers = {str(p.resolve()) for folder in BABBLE_SPEECH for p in (DATA_ROOT / folder).glob("*.flac")}
    assert len(talkers) == 20 and {f.path for f in data.train_set.generated.babble} == talkers
    assert len(data.train_set.speech) == 251 - 20 and not talkers & {f.path for f in data.train_set.speech}
    held_out = {str(p.resolve()) for folder in VAL_SPEECH + TEST_SPEECH for p in (DATA_ROOT / folder).glob("*.flac")}
    assert not talkers & held_out
    with pytest.raises(ValueError, match="overlaps the validation speech"):
        Mixtures(speech=["speech/ljspeech"], noise=["generated:babble"], val_speech=[VAL_SPEECH[0]],
                 babble_speech=[VAL_SPEECH[0]], crop_seconds=0.25).setup("fit")
    with pytest.raises(ValueError, match="generated:white, generated:pink, generated:brown"):
        Mixtures(speech=["speech/ljspeech"], noise=["generated:purple"])


# ---------------------------------------------------------------------------------------------
# Generated noises


def _slope(wave) -> float:
    frequencies, power = welch(wave, fs=RATE, nperseg=4096)
    band = (frequencies >= 50) & (frequencies <= 6000)
    return float(np.polyfit(np.log10(frequencies[band]), np.log10(power[band]), 1)[0])


def test_white_pink_brown_spectral_slopes():
    for make, expected in ((white_noise, 0.0), (pink_noise, -1.0), (brown_noise, -2.0)):
        for seed in (0, 1):
            wave = make(4 * RATE, seed)
            assert wave.dtype == np.float32 and abs(float(np.sqrt(np.mean(wave**2))) - 1) < 1e-4
            assert abs(_slope(wave) - expected) < 0.1, (make.__name__, _slope(wave))
        assert np.array_equal(make(RATE, 5), make(RATE, 5)) and not np.array_equal(make(RATE, 5), make(RATE, 6))


def test_tilt_spectrum_gives_the_slope_asked_for_about_the_pivot():
    white = white_noise(4 * RATE, 0)
    frequencies, flat = welch(white, fs=RATE, nperseg=4096)
    band = (frequencies >= 200) & (frequencies <= 7000)  # above the 100 Hz floor
    for db_per_octave in (-6.0, -3.0, 2.0):
        tilted = tilt_spectrum(white, db_per_octave, RATE)
        assert tilted.dtype == np.float32 and tilted.shape == white.shape
        _, power = welch(tilted, fs=RATE, nperseg=4096)
        gain_db = 10 * np.log10(power[band] / flat[band])  # the tilt alone, without the noise's own ripple
        slope, at_pivot = np.polyfit(np.log2(frequencies[band] / 1000.0), gain_db, 1)
        assert abs(slope - db_per_octave) < 0.05 and abs(at_pivot) < 0.1, (db_per_octave, slope, at_pivot)
        below = (frequencies > 10) & (frequencies < 90)
        lifted = 10 * np.log10(np.mean(power[below]) / np.mean(flat[below]))
        assert abs(lifted - db_per_octave * math.log2(100 / 1000)) < 1.0  # flat below the floor
    assert np.array_equal(tilt_spectrum(white, 0.0, RATE), white)


def test_noise_tilt_darkens_training_noise_only_and_changes_nothing_else():
    plain = Mixtures(**SMALL)
    tilted = Mixtures(**{**SMALL, "noise_tilt_db": (-6.0, -6.0)})
    for data in (plain, tilted):
        data.setup("fit")
    a, b = plain.train_set[3], tilted.train_set[3]
    assert torch.equal(a["clean"], b["clean"]) and a["snr_db"] == b["snr_db"]  # same speech, gain and SNR
    assert not torch.equal(a["noise"], b["noise"])
    assert abs(_db(float(b["noise"].square().mean()) / float(a["noise"].square().mean()))) < 0.5  # still at its SNR

    def high_share(noise):  # share of the noise's power above 3 kHz
        frequencies, power = welch(noise.numpy(), fs=RATE, nperseg=1024)
        return power[frequencies >= 3000].sum() / power.sum()

    assert high_share(b["noise"]) < 0.25 * high_share(a["noise"])  # white noise at 6 dB/octave darker
    _check_rows(tilted.train_dataloader().__iter__().__next__())  # noisy = clean + noise, at the drawn SNR
    assert _same(_batches(plain.val_dataloader()), _batches(tilted.val_dataloader()))  # validation untouched
    with pytest.raises(ValueError, match=r"noise_tilt_db must be \[low, high\] in dB per octave"):
        Mixtures(speech=["speech/ljspeech"], noise=["generated:white"], noise_tilt_db=(0.0, -6.0))


def _log_spectrum(wave):
    frequencies, power = welch(wave, fs=RATE, nperseg=800, noverlap=400)
    return frequencies, 10 * np.log10(power)


def test_speech_shaped_noise_has_the_long_term_spectrum_of_six_utterances():
    utterances = [_speech(i) for i in range(10)]
    asked = []
    rng = np.random.default_rng(0)

    def spectrum_of(i):
        asked.append(i)
        return magnitude_sum(utterances[i])

    noise = speech_shaped_noise(5 * RATE, utterances, rng, spectrum_of=spectrum_of)
    assert len(set(asked)) == 6  # the paper's 6 random clean utterances
    average = average_magnitude_spectrum([utterances[i] for i in asked])
    frequencies, ssn = _log_spectrum(noise)
    band = (frequencies >= 100) & (frequencies <= 7000)
    target = 20 * np.log10(average)[band]
    assert np.corrcoef(ssn[band], target)[0, 1] > 0.98
    assert np.corrcoef(_log_spectrum(pink_noise(5 * RATE, 0))[1][band], target)[0, 1] < 0.9  # not any sloped noise
    deviation = ssn[band] - target
    assert np.median(np.abs(deviation - deviation.mean())) < 1.0  # within 1 dB of the speech average, typically


def _fluctuation_db(wave, frame=800) -> float:
    energy = np.square(wave[: len(wave) // frame * frame].reshape(-1, frame)).mean(axis=1)
    return float(np.std(10 * np.log10(energy)))


def test_babble_is_non_stationary_and_made_only_of_the_given_speakers():
    talkers = [read_audio(p)[0][0].numpy() for p in sorted((DATA_ROOT / TEST_SPEECH[0]).glob("*.flac"))[:8]]
    babble, sources = babble_noise(5 * RATE, talkers, 0, talkers=6, return_sources=True)
    assert len({i for i, _ in sources}) == 6 and all(0 <= i < len(talkers) for i, _ in sources)
    rebuilt = sum(loop_crop(level_normalised(talkers[i]), offset, 5 * RATE).astype(np.float64) for i, offset in sources)
    rebuilt /= np.sqrt(np.mean(rebuilt**2))
    assert np.max(np.abs(rebuilt - babble)) < 1e-4  # nothing but those six utterances
    ssn = speech_shaped_noise(5 * RATE, talkers, 0)
    assert _fluctuation_db(babble) > 1.5 and _fluctuation_db(babble) > 2 * _fluctuation_db(ssn)
    assert _fluctuation_db(babble) < _fluctuation_db(talkers[0])  # babble, not one talker
    assert np.array_equal(babble, babble_noise(5 * RATE, talkers, 0, talkers=6))


# ---------------------------------------------------------------------------------------------
# The user's own noise, and bad data


def test_my_noise_folder_fine_tunes_and_short_noise_is_looped(tmp_path):
    noise, rate = sf.read(str(NOISE / "running_tap.flac"), frames=int(0.6 * RATE), start=RATE, dtype="float32")
    folder = tmp_path / "my_noise"
    folder.mkdir()
    sf.write(folder / "tap.wav", noise, rate, subtype="FLOAT")
    data = Mixtures(speech=["speech/ljspeech"], noise=[str(folder)], crop_seconds=1.0, batch_size=4, train_size=4,
                    val_size=4, max_files=8)
    data.setup("fit")
    assert [f.path for f in data.train_set.noise] == [str((folder / "tap.wav").resolve())]
    batch = next(iter(data.train_dataloader()))
    period = len(noise)
    for row in batch["noise"].numpy():  # a scaled, looped copy of the 0.6 s file in a 1 s crop
        assert np.allclose(row[period:], row[: RATE - period], atol=1e-6)
        scale = np.sqrt(np.mean(row[:period] ** 2) / np.mean(noise**2))
        assert np.allclose(np.sort(np.abs(row[:period])) / scale, np.sort(np.abs(noise)), atol=1e-5)
    _check_rows(batch, gain_db=None)


def test_bad_arguments_say_what_is_expected():
    with pytest.raises(ValueError, match=r"gain_db must be \[low, high\] with low <= high"):
        Mixtures(speech=["speech/ljspeech"], noise=["generated:white"], gain_db=(5.0, -5.0))
    with pytest.raises(ValueError, match=r"snr_db must be \[low, high\]"):
        Mixtures(speech=["speech/ljspeech"], noise=["generated:white"], snr_db=(20.0, -5.0))
    with pytest.raises(ValueError, match="snr_db_choices is empty"):
        Mixtures(speech=["speech/ljspeech"], noise=["generated:white"], snr_db_choices=[])


def test_missing_folder_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        Mixtures(speech=["speech/ljspeech"], noise=[str(tmp_path / "no_such_noise")], crop_seconds=0.5).setup("fit")
    message = str(error.value)
    assert "Mixtures noise" in message and str(tmp_path / "no_such_noise") in message
    assert "does not exist; check the path" in message  # absolute: ZOO_DATA has nothing to do with it
    with pytest.raises(FileNotFoundError, match="relative paths are read under .*ZOO_DATA or data_root"):
        Mixtures(speech=["speech/ljspeech"], noise=["noise/noisex"], data_root=str(tmp_path)).setup("fit")


def test_silent_files_are_skipped_and_counted_unreadable_files_named(tmp_path):
    speech = tmp_path / "speech"
    speech.mkdir()
    for path in LJ[:3]:
        shutil.copy(path, speech / path.name)
    sf.write(speech / "LJ000-silent.flac", np.zeros(3 * RATE, dtype=np.float32), RATE)
    data = Mixtures(speech=[str(speech)], noise=["noise/noisex/white.flac"], crop_seconds=0.5, batch_size=4,
                    train_size=8, val_size=4)
    with pytest.warns(UserWarning, match=r"Mixtures speech: skipped 1 of 4 files that are silent.*LJ000-silent"):
        data.setup("fit")
    assert [p.endswith("LJ000-silent.flac") for p in data.skipped_silent["speech"]] == [True]
    assert len(data.train_set.speech) == 3 and "LJ000-silent" not in " ".join(f.path for f in data.train_set.speech)
    for batch in data.train_dataloader():
        assert (batch["clean"].abs().amax(dim=1) > 0).all()
    (speech / "LJ999-broken.flac").write_bytes(b"fLaC" + bytes(range(256)) * 8)
    with pytest.raises(AudioFileError, match="LJ999-broken.flac"):
        Mixtures(speech=[str(speech)], noise=["noise/noisex/white.flac"], crop_seconds=0.5).setup("fit")


# ---------------------------------------------------------------------------------------------
# Semi-supervised batches


@pytest.fixture(scope="module")
def noisy_recordings(tmp_path_factory):
    """Three noisy recordings made of real speech and real noise; their clean speech is thrown away."""
    folder = tmp_path_factory.mktemp("noisy_recordings")
    noise = read_audio(DATA_ROOT / "noise/noisex/factory1.flac")[0][0].numpy()
    for i in range(3):
        speech = _speech(i)[: 3 * RATE]
        sf.write(folder / f"recording{i}.flac", 0.5 * speech + 0.05 * noise[i * RATE: i * RATE + len(speech)], RATE)
    return folder


def _semi(folder, **kwargs):
    args = dict(noise_only=["noise/noisex/volvo.flac", "noise/speech-commands/exercise_bike.flac"], noisy=[str(folder)],
                crop_seconds=0.5, noise_only_share=0.5, batch_size=4, train_size=12, val_size=4)
    return SemiSupervisedMixtures(**{**args, **kwargs})


def _excerpt_finder(sources, length: int):
    """A test of whether a row of ``length`` samples is a scaled excerpt of one of ``sources``
    (normalised cross-correlation above 0.999 at some offset)."""
    prepared = []
    for source in sources:
        n = next_fast_len(len(source) + length)
        energy = np.concatenate([[0.0], np.cumsum(source.astype(np.float64) ** 2)])
        windows = np.sqrt(np.maximum(energy[length:] - energy[:-length], 0))
        prepared.append((np.fft.rfft(source, n), n, windows))

    def found(row: np.ndarray) -> bool:
        for spectrum, n, windows in prepared:
            correlation = np.fft.irfft(spectrum * np.conj(np.fft.rfft(row, n)), n)[: len(windows)]
            if np.max(correlation / (windows * np.linalg.norm(row) + 1e-12)) > 0.999:
                return True
        return False

    return found


def test_semi_supervised_batches_have_the_exact_share_and_no_clean_speech(noisy_recordings):
    data = _semi(noisy_recordings)
    data.setup("fit")
    batches = _batches(data.train_dataloader())
    assert len(batches) == 3
    in_recordings = _excerpt_finder([read_audio(p)[0][0].numpy() for p in sorted(noisy_recordings.glob("*.flac"))],
                                    RATE // 2)
    in_noises = _excerpt_finder([read_audio(DATA_ROOT / p)[0][0].numpy() for p in data.hparams.noise_only], RATE // 2)
    for batch in batches:
        assert batch["noise_only"].tolist() == [True, True, False, False]  # exact, and always first
        assert torch.equal(batch["has_clean"], batch["noise_only"])
        assert torch.isfinite(batch["clean"]).all() and not batch["clean"].any()  # NaN-free zero placeholders
        assert torch.equal(batch["noise"][:2], batch["noisy"][:2]) and not batch["noise"][2:].any()
        for row in batch["noisy"][2:].numpy():
            assert in_recordings(row) and not in_noises(row)
        for row in batch["noisy"][:2].numpy():
            assert in_noises(row) and not in_recordings(row)
    again = _semi(noisy_recordings)
    again.setup("fit")
    assert _same(batches, _batches(again.train_dataloader()))
    val = next(iter(data.val_dataloader()))
    assert not val["noise_only"].any() and val["has_clean"].all() and (val["clean"].abs().amax(dim=1) > 0).all()
    with pytest.raises(ValueError, match="noise_only_share=0.3 of batch_size=4 is 1.2 rows.*0.25, 0.5"):
        _semi(noisy_recordings, noise_only_share=0.3)
    with pytest.raises(ValueError, match="generated noises have no recorded level"):
        _semi(noisy_recordings, noise_only=["generated:white"])


class _TinyDenoiser(DenoiserModule):
    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(()))

    def forward(self, wave):
        return self.gain * wave

    def loss(self, outputs, batch):
        return (outputs["enhanced"] - batch["clean"]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _TinySemiSupervised(_TinyDenoiser):
    semi_supervised = True


def test_a_supervised_model_cannot_train_on_rows_without_clean_speech(noisy_recordings):
    """The check is the model's (zoo.module.BatchContract): the data layer does not ask what a model is."""
    trainer_args = dict(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)
    with pytest.raises(SupervisedModelError, match="_TinyDenoiser.*without clean speech.*semi_supervised = True"):
        L.Trainer(**trainer_args).fit(_TinyDenoiser(), _semi(noisy_recordings))
    trainer = L.Trainer(**trainer_args)
    trainer.fit(_TinySemiSupervised(), _semi(noisy_recordings))
    assert trainer.global_step == 2


def test_validation_mixtures_are_written_for_zoo_eval(tmp_path):
    import yaml

    from zoo.data.write_mixtures import main, validation_mixtures

    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump({"data": {"class_path": "zoo.data.Mixtures", "init_args": {
        **{k: list(v) if isinstance(v, tuple) else v for k, v in SMALL.items()}, "val_size": 2}}}))
    main([str(config), str(tmp_path / "out"), "--count", "3"])
    noisy = sorted((tmp_path / "out/noisy").glob("*.wav"))
    assert [p.name for p in noisy] == ["val_0000.wav", "val_0001.wav", "val_0002.wav"]
    validated = validation_mixtures(config, 2).val_set  # what a run of this recipe validates on
    for i in range(2):
        for folder in ("noisy", "clean"):
            wave, rate = read_audio(tmp_path / "out" / folder / f"val_{i:04d}.wav")
            assert rate == RATE and torch.equal(wave[0], validated[i][folder])  # float WAV: exact
    (tmp_path / "no_data.yaml").write_text("trainer: {max_epochs: 1}\n")
    with pytest.raises(SystemExit, match="no data block"):
        main([str(tmp_path / "no_data.yaml"), str(tmp_path / "x")])
