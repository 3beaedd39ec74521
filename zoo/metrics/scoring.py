"""Every measure of one enhanced file against its clean reference, and many files in parallel."""
from __future__ import annotations

import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ._signals import as_pair, check_sample_rate
from .composite import COMPOSITE_RATES, at_composite_rate, composite_at_native_rate, composite_from_measures
from .distance import psnr, rmse
from .intelligibility import stoi_score
from .llr import llr_frames, reduce_llr
from .perceptual import pesq_score
from .ratios import si_sdr, snr
from .segmental import segmental_snr
from .wss import weighted_spectral_slope

MEASURES = ("pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "snr", "seg_snr", "llr", "wss", "csig", "cbak",
            "covl", "rmse", "psnr")


def score_file_pair(enhanced, clean, sample_rate: int) -> dict[str, float]:
    """All measures of ``enhanced`` against ``clean`` (mono, numpy or torch, ``[T]`` or ``[1, T]``).

    Keys (:data:`MEASURES`): ``pesq_wb``, ``pesq_nb`` (MOS-LQO), ``stoi``, ``estoi``, ``si_sdr``,
    ``snr``, ``seg_snr`` (dB), ``llr``, ``wss`` (lower is better), ``csig``, ``cbak``, ``covl``
    (1-5), ``rmse``, ``psnr`` (dB). Each is computed once (the composites reuse PESQ, the LLR
    frames, WSS and segSNR). Different lengths are trimmed to the shorter with a warning; NaN or
    infinite samples raise ValueError; PESQ and the composites are NaN (with a warning) when the
    reference is digital silence. At rates other than 8/16 kHz, PESQ and the composites are
    computed on signals resampled to 16 kHz (8 kHz for PESQ narrow band), with a warning, while
    the other measures use the given rate.
    """
    enhanced, clean = as_pair(enhanced, clean, names=("enhanced", "clean"))
    sample_rate = check_sample_rate(sample_rate)
    scores = {
        "pesq_wb": pesq_score(enhanced, clean, sample_rate, "wb"),
        "pesq_nb": pesq_score(enhanced, clean, sample_rate, "nb"),
        "stoi": stoi_score(enhanced, clean, sample_rate),
        "estoi": stoi_score(enhanced, clean, sample_rate, extended=True),
        "si_sdr": si_sdr(enhanced, clean),
        "snr": snr(enhanced, clean),
        "seg_snr": segmental_snr(enhanced, clean, sample_rate),
    }
    frame_llr = llr_frames(enhanced, clean, sample_rate)
    scores["llr"] = reduce_llr(frame_llr, used_for_composite=False)
    scores["wss"] = weighted_spectral_slope(enhanced, clean, sample_rate)
    if sample_rate in COMPOSITE_RATES:
        scores.update(composite_from_measures(
            pesq=scores["pesq_wb" if sample_rate == 16000 else "pesq_nb"],
            llr=reduce_llr(frame_llr, used_for_composite=True), wss=scores["wss"], seg_snr=scores["seg_snr"]))
    else:
        scores.update(composite_at_native_rate(*at_composite_rate(enhanced, clean, sample_rate),
                                               pesq=scores["pesq_wb"]))
    scores["rmse"] = rmse(enhanced, clean)
    scores["psnr"] = psnr(enhanced, clean)
    return scores


def score_pairs(pairs, sample_rate: int | None = None, workers: int | None = None,
                progress: bool = True) -> list[dict[str, float]]:
    """:func:`score_file_pair` of every ``(enhanced, clean)`` pair, in parallel processes.

    ``pairs``: audio file paths (read with soundfile; mono; both at the same rate) or mono arrays
    (then ``sample_rate`` is required; for files it is optional and, if given, must match them).
    ``workers``: processes (default: all CPU cores, at most one per pair; 1 scores in this
    process). Workers are forked where the platform can (they then start in milliseconds instead
    of re-importing torch and lightning) and run torch single-threaded, so that no OpenMP pool
    is used after the fork; elsewhere they are spawned, and scripts need the usual
    ``if __name__ == "__main__":`` guard.
    Returns one dict per pair, in input order. Warnings raised while scoring a pair are repeated
    here, prefixed with the pair's name; a pair that cannot be scored raises RuntimeError naming it.
    """
    jobs = [(index, _label(index, enhanced), enhanced, clean, sample_rate)
            for index, (enhanced, clean) in enumerate(pairs)]
    if not jobs:
        return []
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    results: list = [None] * len(jobs)
    bar = tqdm(total=len(jobs), unit="file", desc="scoring", disable=not progress)
    try:
        if workers == 1:
            for job in jobs:
                results[job[0]] = _collect(job, _run_job, job)
                bar.update()
        else:
            with ProcessPoolExecutor(workers, mp_context=_start_context(), initializer=_init_worker) as pool:
                futures = {pool.submit(_run_job, job): job for job in jobs}
                try:
                    for future in as_completed(futures):
                        job = futures[future]
                        results[job[0]] = _collect(job, future.result)
                        bar.update()
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        bar.close()
    return results


def _label(index: int, item) -> str:
    return Path(item).name if isinstance(item, (str, os.PathLike)) else f"pair {index}"


def _collect(job, function, *args) -> dict[str, float]:
    """Run (or fetch) one job's result, naming the pair in errors and re-issuing its warnings."""
    try:
        scores, caught = function(*args)
    except Exception as error:
        raise RuntimeError(f"could not score {job[1]}: {type(error).__name__}: {error}") from error
    for category, message in caught:
        warnings.warn(f"{job[1]}: {message}", category, stacklevel=3)
    return scores


def _start_context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core already; and no OpenMP pool after a fork


def _run_job(job) -> tuple[dict[str, float], list[tuple[type, str]]]:
    _, _, enhanced, clean, sample_rate = job
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        enhanced, enhanced_rate = _load(enhanced, sample_rate, "enhanced")
        clean, clean_rate = _load(clean, sample_rate, "clean")
        if enhanced_rate != clean_rate:
            raise ValueError(f"enhanced is at {enhanced_rate} Hz but clean at {clean_rate} Hz; resample one of them")
        scores = score_file_pair(enhanced, clean, enhanced_rate)
    return scores, [(w.category, str(w.message)) for w in caught]


def _load(item, sample_rate: int | None, name: str) -> tuple[np.ndarray, int]:
    if isinstance(item, (str, os.PathLike)):
        from ..audio import read_audio

        wave, rate = read_audio(item)
        if wave.shape[0] != 1:
            raise ValueError(f"{item} has {wave.shape[0]} channels; quality measures need mono files")
        if sample_rate is not None and rate != check_sample_rate(sample_rate):
            raise ValueError(f"{item} is at {rate} Hz, not the sample_rate={sample_rate} asked for")
        return wave[0].numpy(), rate
    if sample_rate is None:
        raise ValueError(f"{name} is an array: pass sample_rate to score_pairs")
    return item, check_sample_rate(sample_rate)
