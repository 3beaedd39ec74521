"""zoo.metrics: the measures against pysepm on real speech, hand-computed cases, the torchmetrics
classes, per-file and parallel scoring, edge cases, and the noisy-input numbers of the subset."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from zoo.data.files import DATA_ROOT
from zoo.metrics import (
    CBAK,
    PSNR,
    RMSE,
    SILENT_OUTPUT_SCORE,
    CompositeMeasures,
    PESQWideBand,
    SegmentalSNR,
    composite_from_measures,
    composite_measures,
    log_likelihood_ratio,
    pesq_score,
    psnr,
    quality_scores,
    rmse,
    score_file_pair,
    score_pairs,
    segmental_snr,
    si_sdr,
    snr,
    speech_quality_metrics,
    weighted_spectral_slope,
)

SUBSET = DATA_ROOT / "voicebank-demand-subset"
NAMES = sorted(p.name for p in (SUBSET / "clean_testset_wav").glob("*.wav"))
RATE = 16000


def read_pair(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) float64 at 16 kHz."""
    noisy, rate = sf.read(SUBSET / "noisy_testset_wav" / name)
    clean, clean_rate = sf.read(SUBSET / "clean_testset_wav" / name)
    assert rate == clean_rate == RATE
    return noisy, clean


@pytest.fixture(scope="module")
def ten_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    assert len(NAMES) == 69, SUBSET
    return [read_pair(name) for name in NAMES[:10]]


@pytest.fixture(scope="module")
def pysepm():
    import reference_pysepm

    return reference_pysepm


@pytest.fixture
def speech() -> tuple[np.ndarray, np.ndarray]:
    return read_pair(NAMES[0])


def noise_signal(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """White noise: every frame has energy, so per-frame measures are exactly hand-computable."""
    return np.random.default_rng(seed).standard_normal(int(seconds * RATE)) * 0.1


# --- (a) against pysepm-evo on real VoiceBank-DEMAND pairs ------------------------------------

def test_segsnr_llr_wss_match_pysepm_on_real_speech(ten_pairs, pysepm):
    differences = {"seg_snr": 0.0, "llr": 0.0, "llr_composite": 0.0, "wss": 0.0}
    reference_values = []
    for noisy, clean in ten_pairs:
        ours = {"seg_snr": segmental_snr(noisy, clean, RATE), "llr": log_likelihood_ratio(noisy, clean, RATE),
                "llr_composite": log_likelihood_ratio(noisy, clean, RATE, used_for_composite=True),
                "wss": weighted_spectral_slope(noisy, clean, RATE)}
        theirs = {"seg_snr": pysepm.SNRseg(clean, noisy, RATE), "llr": pysepm.llr(clean, noisy, RATE),
                  "llr_composite": pysepm.llr(clean, noisy, RATE, used_for_composite=True),
                  "wss": pysepm.wss(clean, noisy, RATE)}
        reference_values.append(theirs)
        for key in differences:
            differences[key] = max(differences[key], abs(ours[key] - theirs[key]))
    # measured on this machine: 0, 1.1e-10, 1.1e-10, 3.6e-15 (the LLR's Levinson recursion is
    # ill-conditioned in near-silent frames, so summation order shows at 1e-10)
    assert differences["seg_snr"] < 1e-12, differences
    assert differences["llr"] < 1e-8 and differences["llr_composite"] < 1e-8, differences
    assert differences["wss"] < 1e-10, differences
    # the comparison is not vacuous: real, varied scores
    assert np.std([v["wss"] for v in reference_values]) > 1 and np.std([v["seg_snr"] for v in reference_values]) > 1


def test_segsnr_llr_wss_match_pysepm_at_8khz(ten_pairs, pysepm):
    """8 kHz: LPC order 10, 240-sample frames, 512-point FFT."""
    for noisy, clean in ten_pairs[:3]:
        noisy, clean = noisy[::2].copy(), clean[::2].copy()  # the measures do not care about aliasing
        assert segmental_snr(noisy, clean, 8000) == pytest.approx(pysepm.SNRseg(clean, noisy, 8000), abs=1e-12)
        assert log_likelihood_ratio(noisy, clean, 8000) == pytest.approx(pysepm.llr(clean, noisy, 8000), abs=1e-8)
        assert weighted_spectral_slope(noisy, clean, 8000) == pytest.approx(pysepm.wss(clean, noisy, 8000), abs=1e-10)


def test_composites_match_the_regressions_on_pysepm_measures(ten_pairs, pysepm):
    from pesq import pesq

    for noisy, clean in ten_pairs:
        expected = pysepm.composite(clean, noisy, RATE, pesq(RATE, clean, noisy, "wb"))
        ours = composite_measures(noisy, clean, RATE)
        assert [ours["csig"], ours["cbak"], ours["covl"]] == pytest.approx(expected, abs=1e-8)


# --- (b) hand-computed cases -------------------------------------------------------------------

def test_snr_and_si_sdr_of_signal_plus_noise_of_known_power():
    signal = np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)
    noise = np.random.default_rng(1).standard_normal(RATE)
    noise -= noise @ signal / (signal @ signal) * signal  # orthogonal: SI-SDR's optimal scale is exactly 1
    noise *= math.sqrt(np.sum(signal ** 2) / np.sum(noise ** 2) / 10 ** (12.0 / 10))  # 12 dB below
    assert snr(signal + noise, signal) == pytest.approx(12.0, abs=1e-9)
    assert si_sdr(signal + noise, signal) == pytest.approx(12.0, abs=1e-9)
    assert snr(signal + noise / 2, signal) == pytest.approx(12.0 + 20 * math.log10(2), abs=1e-9)


def test_rmse_and_psnr_of_known_arrays():
    target = np.array([0.5, -1.0, 0.25, 0.0])
    preds = target + np.array([0.1, -0.1, 0.1, -0.1])
    assert rmse(preds, target) == pytest.approx(0.1, abs=1e-12)
    assert psnr(preds, target) == pytest.approx(20.0, abs=1e-9)  # peak 1, RMSE 0.1
    assert psnr(preds / 2, target / 2) == pytest.approx(20.0, abs=1e-9)
    assert psnr(target * 0.5 + np.array([0.2, 0, 0, 0]), target * 0.5) == pytest.approx(20 * math.log10(0.5 / 0.1),
                                                                                          abs=1e-9)
    assert psnr(target, target) > 140  # finite even for identical signals
    assert math.isfinite(psnr(np.zeros(4), np.zeros(4))) and psnr(np.zeros(4), np.zeros(4)) == 0.0


def test_segmental_snr_hand_cases():
    x = noise_signal()
    assert segmental_snr(x, x, RATE) == 35.0  # every frame hits the +35 dB ceiling
    assert segmental_snr(0.5 * x, x, RATE) == pytest.approx(10 * math.log10(4), abs=1e-9)  # error = x/2 in every frame
    assert segmental_snr(np.zeros_like(x), x, RATE) == pytest.approx(0.0, abs=1e-9)  # error = x
    assert segmental_snr(10 * x, x, RATE) == -10.0  # -19 dB per frame, clamped at -10 dB
    assert segmental_snr(x, np.zeros_like(x), RATE) == -10.0  # silent reference frames count -10 dB


def test_llr_and_wss_of_identical_and_rescaled_signals(speech):
    noisy, clean = speech
    assert log_likelihood_ratio(clean, clean, RATE) == 0.0
    assert log_likelihood_ratio(clean, clean, RATE, used_for_composite=True) == 0.0
    assert weighted_spectral_slope(clean, clean, RATE) == 0.0
    # both are blind to gain: the LPC model and the dB slopes do not change
    assert log_likelihood_ratio(3 * clean, clean, RATE) == pytest.approx(0.0, abs=1e-6)
    assert weighted_spectral_slope(0.5 * clean, clean, RATE) == pytest.approx(0.0, abs=1e-6)
    assert log_likelihood_ratio(noisy, clean, RATE) > 0.1 and weighted_spectral_slope(noisy, clean, RATE) > 10


def test_composite_regressions_by_hand():
    scores = composite_from_measures(pesq=2.0, llr=1.0, wss=40.0, seg_snr=5.0)
    # 3.093 - 1.029 + 1.206 - 0.360 ; 1.634 + 0.956 - 0.280 + 0.315 ; 1.594 + 1.610 - 0.512 - 0.280
    assert scores == pytest.approx({"csig": 2.910, "cbak": 2.625, "covl": 2.412}, abs=1e-9)
    clean = composite_from_measures(pesq=4.64, llr=0.0, wss=0.0, seg_snr=35.0)
    assert clean == {"csig": 5.0, "cbak": 5.0, "covl": 5.0}  # 5.89, 6.06, 5.33 before clipping
    assert composite_from_measures(pesq=1.0, llr=3.0, wss=150.0, seg_snr=-10.0) == {"csig": 1.0, "cbak": 1.0,
                                                                                    "covl": 1.0}
    assert all(math.isnan(v) for v in composite_from_measures(math.nan, 0.5, 30.0, 5.0).values())


def test_composites_on_eight_pairs_are_finite_bounded_and_ordered():
    pairs = [read_pair(name) for name in NAMES[10:18]]
    noisy_scores = [composite_measures(noisy, clean, RATE) for noisy, clean in pairs]
    clean_scores = [composite_measures(clean, clean, RATE) for _, clean in pairs]
    for noisy, clean in zip(noisy_scores, clean_scores):
        assert clean == {"csig": 5.0, "cbak": 5.0, "covl": 5.0}  # the regressions exceed 5, clipped
        for key in ("csig", "cbak", "covl"):
            assert math.isfinite(noisy[key]) and 1.0 <= noisy[key] <= 5.0, noisy
        assert sum(noisy.values()) < sum(clean.values()), noisy  # CSIG alone can saturate on easy files
    for key in ("csig", "cbak", "covl"):
        assert np.mean([s[key] for s in noisy_scores]) < 4.5, key
    # noisy speech at about 2 dB SNR: clearly degraded, and the signal rated above the background
    assert np.mean([s["covl"] for s in noisy_scores]) < 4.0
    assert np.mean([s["csig"] for s in noisy_scores]) > np.mean([s["cbak"] for s in noisy_scores])


# --- (c) torchmetrics classes ------------------------------------------------------------------

@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """4 real pairs, 2 s each, as [4, 32000] float32 tensors (noisy, clean)."""
    pairs = [read_pair(name) for name in NAMES[:6] if sf.info(SUBSET / "clean_testset_wav" / name).frames >= 32000][:4]
    assert len(pairs) == 4
    noisy = torch.tensor(np.stack([n[:32000] for n, _ in pairs]), dtype=torch.float32)
    clean = torch.tensor(np.stack([c[:32000] for _, c in pairs]), dtype=torch.float32)
    return noisy, clean


def test_metric_collection_accumulates_over_batches_and_resets(batch):
    noisy, clean = batch
    collection = speech_quality_metrics(RATE)
    assert sorted(collection.keys()) == sorted(["pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "snr", "seg_snr",
                                                "llr", "wss", "csig", "cbak", "covl"])
    collection.update(noisy[:2], clean[:2])
    collection.update(noisy[2:], clean[2:])
    two_batches = {k: float(v) for k, v in collection.compute().items()}
    one_call = {k: float(v) for k, v in speech_quality_metrics(RATE)(noisy, clean).items()}
    per_file = [score_file_pair(n, c, RATE) for n, c in zip(noisy, clean)]
    for key, value in two_batches.items():
        assert value == pytest.approx(one_call[key], rel=1e-6, abs=1e-6), key
        assert value == pytest.approx(np.mean([row[key] for row in per_file]), rel=1e-5, abs=1e-5), key
    assert len({two_batches["csig"], two_batches["cbak"], two_batches["covl"]}) == 3

    collection.reset()
    collection.update(noisy[:2], clean[:2])
    first_batch_only = {k: float(v) for k, v in collection.compute().items()}
    for key, value in first_batch_only.items():
        assert value == pytest.approx(np.mean([row[key] for row in per_file[:2]]), rel=1e-5, abs=1e-5), key


def test_metric_states_sum_across_processes(batch):
    """What DDP's sync does: the states of two workers' metrics are summed."""
    noisy, clean = batch
    worker_a, worker_b, whole = CompositeMeasures(RATE), CompositeMeasures(RATE), CompositeMeasures(RATE)
    assert set(worker_a._reductions) == {f"{m}_{s}" for m in ("csig", "cbak", "covl") for s in ("sum", "files")}
    worker_a.update(noisy[:1], clean[:1])
    worker_b.update(noisy[1:], clean[1:])
    worker_a.merge_state(worker_b)
    whole.update(noisy, clean)
    merged, expected = worker_a.compute(), whole.compute()
    assert set(merged) == {"csig", "cbak", "covl"}
    for key in merged:
        assert float(merged[key]) == pytest.approx(float(expected[key]), rel=1e-6)


def test_metrics_accept_single_signals_padded_batches_and_numpy(batch):
    noisy, clean = batch
    single = SegmentalSNR(RATE)
    single.update(noisy[0], clean[0])
    assert float(single.compute()) == pytest.approx(segmental_snr(noisy[0], clean[0], RATE), rel=1e-6)

    lengths = torch.tensor([32000, 20000])
    padded_noisy, padded_clean = noisy[:2].clone(), clean[:2].clone()
    padded_noisy[1, 20000:] = 0
    padded_clean[1, 20000:] = 0
    metric = CBAK(RATE)
    metric.update(padded_noisy, padded_clean, lengths=lengths)
    expected = np.mean([composite_measures(noisy[0], clean[0], RATE)["cbak"],
                        composite_measures(noisy[1, :20000], clean[1, :20000], RATE)["cbak"]])
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-6)

    distances = RMSE()
    distances.update(np.array([[0.5, -1.0, 0.25, 0.0]]) + 0.1, np.array([[0.5, -1.0, 0.25, 0.0]]))
    assert float(distances.compute()) == pytest.approx(0.1, rel=1e-6)
    peak = PSNR()
    peak.update(torch.tensor([0.6, -1.1, 0.35, 0.1]), torch.tensor([0.5, -1.0, 0.25, 0.0]))
    assert float(peak.compute()) == pytest.approx(20.0, abs=1e-4)


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*")  # lightning's own deprecation, not ours
def test_metric_in_a_lightning_validation_loop(batch):
    import lightning as L

    noisy, clean = batch

    class Identity(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.metrics = speech_quality_metrics(RATE, prefix="val/")

        def validation_step(self, batch, batch_index):
            self.metrics.update(batch["noisy"], batch["clean"])
            self.log_dict(self.metrics, batch_size=batch["noisy"].shape[0])

    loader = torch.utils.data.DataLoader([{"noisy": n, "clean": c} for n, c in zip(noisy, clean)], batch_size=2)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    logged = trainer.validate(Identity(), loader, verbose=False)[0]
    expected = np.mean([score_file_pair(n, c, RATE)["pesq_wb"] for n, c in zip(noisy, clean)])
    assert logged["val/pesq_wb"] == pytest.approx(expected, rel=1e-5)
    assert {"val/csig", "val/cbak", "val/covl", "val/seg_snr"} <= set(logged)


# --- per-file and parallel scoring -------------------------------------------------------------

def test_score_file_pair_keys_and_quality_scores_agree(speech):
    noisy, clean = speech
    scores = score_file_pair(torch.tensor(noisy, dtype=torch.float32), torch.tensor(clean, dtype=torch.float32), RATE)
    assert list(scores) == ["pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "snr", "seg_snr", "llr", "wss", "csig",
                            "cbak", "covl", "rmse", "psnr"]
    assert all(isinstance(v, float) and math.isfinite(v) for v in scores.values())
    headline = quality_scores(noisy, clean, RATE)
    assert headline == pytest.approx({k: scores[k] for k in ("pesq_wb", "stoi", "si_sdr")}, abs=1e-5)
    assert scores["pesq_wb"] == pytest.approx(2.925, abs=1e-3)  # p232_001, pesq package


def test_int16_pcm_is_scaled_like_soundfile_reads_it(speech):
    noisy, clean = speech  # read from 16-bit files: exact multiples of 1/32768
    pcm = np.round(noisy * 32768).astype(np.int16)
    assert score_file_pair(pcm, clean, RATE) == pytest.approx(score_file_pair(noisy, clean, RATE), abs=1e-9)
    assert rmse(torch.from_numpy(pcm), clean) == pytest.approx(rmse(noisy, clean), abs=1e-12)


def test_score_pairs_in_parallel_processes_matches_per_file_scores(tmp_path):
    names = NAMES[:3]
    files = [(SUBSET / "noisy_testset_wav" / n, SUBSET / "clean_testset_wav" / n) for n in names]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = score_pairs(files, workers=2, progress=False)
    assert len(rows) == 3
    for row, name in zip(rows, names):
        noisy, clean = read_pair(name)
        assert row == pytest.approx(score_file_pair(noisy, clean, RATE), abs=1e-6)
    assert not caught

    noisy, clean = read_pair(names[0])
    with pytest.warns(UserWarning, match=r"pair 1: enhanced .* trimmed to the shorter"):
        rows = score_pairs([(noisy, clean), (noisy[:-160], clean)], sample_rate=RATE, workers=1, progress=False)
    assert rows[1] == pytest.approx(score_file_pair(noisy[:-160], clean[:-160], RATE))
    with pytest.raises(RuntimeError, match="could not score missing.wav"):
        score_pairs([(tmp_path / "missing.wav", files[0][1])], workers=1, progress=False)
    with pytest.raises(RuntimeError, match="pass sample_rate"):
        score_pairs([(noisy, clean)], workers=1, progress=False)


# --- edge cases --------------------------------------------------------------------------------

def test_different_lengths_are_trimmed_to_the_shorter_with_a_warning(speech):
    noisy, clean = speech
    with pytest.warns(UserWarning, match=rf"\({noisy.size - 400} samples\) .*\({clean.size} samples\) differ in "
                                         rf"length; both trimmed to the shorter, {noisy.size - 400} samples"):
        trimmed = score_file_pair(noisy[:-400], clean, RATE)
    assert trimmed == pytest.approx(score_file_pair(noisy[:-400], clean[:-400], RATE))
    metric = SegmentalSNR(RATE)
    with pytest.warns(UserWarning, match="trimmed to the shorter"):
        metric.update(torch.tensor(noisy[None, :-400]), torch.tensor(clean[None]))
    assert float(metric.compute()) == pytest.approx(trimmed["seg_snr"], rel=1e-6)


def test_silent_reference_frames_give_finite_loizou_values(speech, pysepm):
    noisy, clean = speech
    gap = np.zeros(RATE // 2)  # half a second of digital silence in both signals
    noisy = np.concatenate([noisy[:8000], gap, noisy[8000:]])
    clean = np.concatenate([clean[:8000], gap, clean[8000:]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero or invalid-value warnings either
        scores = score_file_pair(noisy, clean, RATE)
    assert all(math.isfinite(v) for v in scores.values()), scores
    assert scores["seg_snr"] == pytest.approx(pysepm.SNRseg(clean, noisy, RATE), abs=1e-12)
    assert scores["wss"] == pytest.approx(pysepm.wss(clean, noisy, RATE), abs=1e-10)
    # silence in the reference only: its frames count -10 dB in segSNR, the LPC fit stays finite
    enhanced = noisy.copy()
    enhanced[8000:8000 + RATE // 2] = noise_signal(0.5) * 0.1
    scores = score_file_pair(enhanced, clean, RATE)
    assert all(math.isfinite(scores[k]) for k in ("seg_snr", "llr", "wss", "csig", "cbak", "covl")), scores


def test_digital_silence_in_enhanced_or_reference(speech):
    noisy, clean = speech
    silence = np.zeros_like(clean)
    with pytest.warns(UserWarning, match="enhanced signal is digital silence: PESQ-(wb|nb) scored") as record:
        muted = score_file_pair(silence, clean, RATE)
    assert {str(w.message).split(", ")[0] for w in record} == {
        "the enhanced signal is digital silence: PESQ-wb scored 1.043",
        "the enhanced signal is digital silence: PESQ-nb scored 1.017"}
    assert muted["pesq_wb"] == SILENT_OUTPUT_SCORE["wb"] == pytest.approx(1.0427, abs=1e-4)
    assert muted["pesq_nb"] == SILENT_OUTPUT_SCORE["nb"] == pytest.approx(1.0168, abs=1e-4)
    assert all(math.isfinite(v) for v in muted.values()), muted
    assert muted["covl"] < score_file_pair(noisy, clean, RATE)["covl"]

    for enhanced in (noisy, silence):
        with pytest.warns(UserWarning, match="PESQ is undefined when the reference is digital silence"):
            scores = score_file_pair(enhanced, silence, RATE)
        assert all(math.isnan(scores[k]) for k in ("pesq_wb", "pesq_nb", "csig", "cbak", "covl")), scores
        assert all(math.isfinite(v) for k, v in scores.items() if k not in ("pesq_wb", "pesq_nb", "csig", "cbak",
                                                                           "covl")), scores
        assert scores["seg_snr"] == -10.0

    # a Metric leaves a file whose score is NaN out of its mean
    metric = PESQWideBand(RATE)
    with pytest.warns(UserWarning, match="undefined"):
        metric.update(torch.tensor(np.stack([noisy, noisy])), torch.tensor(np.stack([clean, silence])))
    assert float(metric.compute()) == pytest.approx(pesq_score(noisy, clean, RATE), rel=1e-6)
    empty = PESQWideBand(RATE)
    with pytest.warns(UserWarning, match="undefined"):
        empty.update(torch.tensor(noisy), torch.tensor(silence))
    assert math.isnan(float(empty.compute()))


def test_values_beyond_full_scale_are_accepted(speech):
    noisy, clean = speech
    loud = score_file_pair(3 * noisy, 3 * clean, RATE)  # peaks well beyond +-1
    quiet = score_file_pair(noisy, clean, RATE)
    for key in ("pesq_wb", "pesq_nb", "stoi", "si_sdr", "snr", "seg_snr", "llr", "wss", "csig", "cbak", "covl"):
        assert loud[key] == pytest.approx(quiet[key], abs=2e-3), key  # scale-free measures
    assert loud["rmse"] == pytest.approx(3 * quiet["rmse"]) and loud["psnr"] == pytest.approx(quiet["psnr"])
    clipped = score_file_pair(np.clip(3 * noisy, -1, 1), 3 * clean, RATE)
    assert all(math.isfinite(v) for v in clipped.values())


def test_other_sample_rates_are_resampled_for_pesq_with_a_warning(speech):
    noisy, clean = speech
    at_24k = [AF.resample(torch.tensor(x), RATE, 24000).numpy() for x in (noisy, clean)]
    with pytest.warns(UserWarning, match=r"PESQ wide band is defined at 16 kHz: the signals were resampled from "
                                         r"24000 Hz to 16000 Hz"):
        wide = pesq_score(*at_24k, 24000, "wb")
    assert wide == pytest.approx(pesq_score(noisy, clean, RATE, "wb"), abs=0.05)
    with pytest.warns(UserWarning, match="resampled from 24000 Hz to 8000 Hz"):
        narrow = pesq_score(*at_24k, 24000, "nb")
    assert narrow == pytest.approx(pesq_score(noisy[::2], clean[::2], 8000, "nb"), abs=0.15)
    with pytest.warns(UserWarning, match="composite measures .* resampled from 24000 Hz to 16000 Hz"):
        composites = composite_measures(*at_24k, 24000)
    assert composites == pytest.approx(composite_measures(noisy, clean, RATE), abs=0.1)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 8 kHz narrow band and 16 kHz narrow band need no resampling
        pesq_score(noisy[::2], clean[::2], 8000, "nb")
        pesq_score(noisy, clean, RATE, "nb")
    with pytest.warns(UserWarning, match="resampled from 8000 Hz to 16000 Hz"):
        pesq_score(noisy[::2], clean[::2], 8000, "wb")


def test_nan_and_infinite_inputs_raise_a_clear_error(speech):
    noisy, clean = speech
    broken = noisy.copy()
    broken[[100, 2000]] = np.nan
    with pytest.raises(ValueError, match=r"enhanced contains 2 NaN or infinite samples \(first at sample 100\)"):
        score_file_pair(broken, clean, RATE)
    broken[[100, 2000]] = [np.inf, 0.0]
    with pytest.raises(ValueError, match="target contains 1 NaN or infinite samples.*nan_to_num"):
        segmental_snr(clean, broken, RATE)
    with pytest.raises(ValueError, match=r"preds\[0\] contains .* NaN"):
        speech_quality_metrics(RATE).update(torch.tensor(broken[None]), torch.tensor(clean[None]))
    with pytest.raises(ValueError, match="needs at least 600 samples"):
        segmental_snr(noisy[:500], clean[:500], RATE)
    with pytest.raises(ValueError, match="sample_rate must be a positive whole number"):
        score_file_pair(noisy, clean, 0)
    # the zoo's one sample-rate check (zoo.audio), with the range enhance accepts
    with pytest.raises(ValueError, match="sample_rate 100 Hz is outside the accepted range 1,000 to 384,000 Hz"):
        segmental_snr(noisy, clean, 100)


def test_measures_frame_and_resample_with_the_zoo_front_end(speech):
    """Loizou's frames are the front-end's (no centring, no padding, the last frame left out), and
    the measures' NumPy resampling is zoo.audio.resample, the torch one, to the sample."""
    from zoo.audio import resample
    from zoo.frontends.stft import frames
    from zoo.metrics._signals import frames as measure_frames

    noisy, clean = speech
    count = (clean.size - 480) // 120
    framed = measure_frames(clean, 480, 120, count, "segmental SNR")
    assert framed.shape == (count, 480) and np.array_equal(framed[5], clean[600:1080])
    assert np.array_equal(framed, frames(clean, 480, 120, center=False, tail="drop")[:-1])
    down = resample(clean, RATE, 8000)
    assert isinstance(down, np.ndarray) and down.dtype == np.float64 and down.shape == (-(-clean.size // 2),)
    assert np.array_equal(down, AF.resample(torch.from_numpy(clean), RATE, 8000).numpy())


# --- (d) the reference numbers of the whole subset ---------------------------------------------

@pytest.mark.slow
def test_reference_numbers_of_the_noisy_subset():
    """The unprocessed noisy input of all 69 pairs, as measured on this machine when the
    measures were written: PESQ-wb 1.664, STOI 0.890, SI-SDR 5.65 dB, CSIG 2.92, CBAK 2.22,
    COVL 2.26 (got 1.6637, 0.8902, 5.6466, 2.9234, 2.2156, 2.2563)."""
    files = [(SUBSET / "noisy_testset_wav" / n, SUBSET / "clean_testset_wav" / n) for n in NAMES]
    assert len(files) == 69
    rows = score_pairs(files, workers=2, progress=False)
    means = {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
    assert means["pesq_wb"] == pytest.approx(1.664, abs=0.02)
    assert means["stoi"] == pytest.approx(0.890, abs=0.02)
    assert means["si_sdr"] == pytest.approx(5.65, abs=0.02)
    assert means["csig"] == pytest.approx(2.92, abs=0.05)
    assert means["cbak"] == pytest.approx(2.22, abs=0.05)
    assert means["covl"] == pytest.approx(2.26, abs=0.05)
