"""The measures as torchmetrics ``Metric`` classes, for a LightningModule's validation_step or standalone.

Every class is the mean over files (batch rows) of the per-file measure of the functional of the
same name. States are a sum and a count per measure, reduced with ``"sum"``, so they accumulate
over batches and synchronise across processes (DDP) exactly. A file whose score is NaN (PESQ and
the composites when the reference is digital silence, with a warning) is left out of the mean;
``compute()`` is NaN if no file had a finite score.

``update(preds, target, lengths=None)``: ``preds`` (enhanced) and ``target`` (clean) are ``[B, T]``
or ``[T]`` tensors (or arrays) at the ``sample_rate`` given at construction; ``lengths`` ([B],
optional) gives each row's valid length in a padded batch. Different ``T`` are trimmed to the
shorter with a warning; NaN or infinite samples raise ValueError.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torchmetrics import Metric, MetricCollection

from ._signals import as_signal, check_sample_rate
from .composite import composite_measures
from .distance import psnr, rmse
from .intelligibility import stoi_score
from .llr import log_likelihood_ratio
from .perceptual import pesq_score
from .ratios import si_sdr, snr
from .segmental import segmental_snr
from .wss import weighted_spectral_slope


class _MeanOverFiles(Metric):
    """Sums and counts of per-file scores; subclasses say which measures and how to score a file."""

    is_differentiable = False
    full_state_update = False
    measures: tuple[str, ...] = ()
    output: str | None = None  # one measure's key, or None for a dict of all ``measures``
    needs_sample_rate = True

    def __init__(self, sample_rate: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if sample_rate is None and self.needs_sample_rate:
            raise ValueError(f"{type(self).__name__} needs the signals' sample_rate (e.g. 16000)")
        self.sample_rate = None if sample_rate is None else check_sample_rate(sample_rate)
        # State names carry the measure, so that a MetricCollection's compute groups only ever
        # merge metrics that compute the same thing (CSIG, CBAK, COVL and CompositeMeasures).
        for measure in self.measures:
            self.add_state(f"{measure}_sum", default=torch.tensor(0.0), dist_reduce_fx="sum")
            self.add_state(f"{measure}_files", default=torch.tensor(0), dist_reduce_fx="sum")

    def score(self, preds: np.ndarray, target: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    def update(self, preds, target, lengths=None) -> None:
        for enhanced, clean in _rows(preds, target, lengths):
            scores = self.score(enhanced, clean)
            for measure in self.measures:
                value = scores[measure]
                if math.isfinite(value):
                    setattr(self, f"{measure}_sum", getattr(self, f"{measure}_sum") + value)
                    setattr(self, f"{measure}_files", getattr(self, f"{measure}_files") + 1)

    def compute(self):
        means = {}
        for measure in self.measures:
            files = getattr(self, f"{measure}_files")
            total = getattr(self, f"{measure}_sum")
            means[measure] = total / files if files > 0 else torch.full_like(total, math.nan)
        return means if self.output is None else means[self.output]


def _rows(preds, target, lengths):
    """Mono float64 numpy rows of a [B, T] or [T] batch, checked, trimmed to common/valid length."""
    preds, target = _as_batch(preds, "preds"), _as_batch(target, "target")
    if preds.shape[0] != target.shape[0]:
        raise ValueError(f"preds has {preds.shape[0]} rows but target {target.shape[0]}; pass [B, T] batches "
                         "of the same size (or [T] signals)")
    if preds.shape[-1] != target.shape[-1]:
        length = min(preds.shape[-1], target.shape[-1])
        warnings.warn(f"preds ({preds.shape[-1]} samples) and target ({target.shape[-1]} samples) differ in length; "
                      f"both trimmed to the shorter, {length} samples, before scoring", stacklevel=4)
        preds, target = preds[..., :length], target[..., :length]
    if lengths is None:
        lengths = [preds.shape[-1]] * preds.shape[0]
    else:
        lengths = [int(n) for n in (lengths.tolist() if hasattr(lengths, "tolist") else lengths)]
        if len(lengths) != preds.shape[0]:
            raise ValueError(f"lengths has {len(lengths)} entries for {preds.shape[0]} rows")
    for row, length in enumerate(lengths):
        yield (as_signal(preds[row, :length], f"preds[{row}]"), as_signal(target[row, :length], f"target[{row}]"))


def _as_batch(wave, name: str):
    if not isinstance(wave, torch.Tensor):
        wave = torch.as_tensor(np.asarray(wave))
    wave = wave.detach()
    if wave.ndim == 1:
        return wave.unsqueeze(0)
    if wave.ndim != 2:
        raise ValueError(f"{name} has shape {tuple(wave.shape)}; pass [B, T] or [T] (mono signals)")
    return wave


class PESQWideBand(_MeanOverFiles):
    """Mean PESQ wide band (P.862.2 MOS-LQO, :func:`~zoo.metrics.pesq_score` ``mode="wb"``); 16 kHz
    (other rates are resampled, with a warning)."""

    higher_is_better = True
    measures, output = ("pesq_wb",), "pesq_wb"

    def score(self, preds, target):
        return {"pesq_wb": pesq_score(preds, target, self.sample_rate, "wb")}


class PESQNarrowBand(_MeanOverFiles):
    """Mean PESQ narrow band (P.862 + P.862.1 MOS-LQO); 8 or 16 kHz (others resampled to 8 kHz)."""

    higher_is_better = True
    measures, output = ("pesq_nb",), "pesq_nb"

    def score(self, preds, target):
        return {"pesq_nb": pesq_score(preds, target, self.sample_rate, "nb")}


class STOI(_MeanOverFiles):
    """Mean STOI (``pystoi``), 0-1."""

    higher_is_better = True
    measures, output = ("stoi",), "stoi"

    def score(self, preds, target):
        return {"stoi": stoi_score(preds, target, self.sample_rate)}


class ESTOI(_MeanOverFiles):
    """Mean extended STOI (``pystoi``, ``extended=True``)."""

    higher_is_better = True
    measures, output = ("estoi",), "estoi"

    def score(self, preds, target):
        return {"estoi": stoi_score(preds, target, self.sample_rate, extended=True)}


class SISDR(_MeanOverFiles):
    """Mean scale-invariant SDR in dB (torchmetrics' functional); ``sample_rate`` is optional."""

    higher_is_better = True
    needs_sample_rate = False
    measures, output = ("si_sdr",), "si_sdr"

    def score(self, preds, target):
        return {"si_sdr": si_sdr(preds, target)}


class SNR(_MeanOverFiles):
    """Mean SNR in dB (torchmetrics' functional); ``sample_rate`` is optional."""

    higher_is_better = True
    needs_sample_rate = False
    measures, output = ("snr",), "snr"

    def score(self, preds, target):
        return {"snr": snr(preds, target)}


class SegmentalSNR(_MeanOverFiles):
    """Mean segmental SNR in dB (per frame clamped to [-10, 35] dB)."""

    higher_is_better = True
    measures, output = ("seg_snr",), "seg_snr"

    def score(self, preds, target):
        return {"seg_snr": segmental_snr(preds, target, self.sample_rate)}


class LogLikelihoodRatio(_MeanOverFiles):
    """Mean LPC log-likelihood ratio (stand-alone variant: frames clamped at 2); lower is better."""

    higher_is_better = False
    measures, output = ("llr",), "llr"

    def score(self, preds, target):
        return {"llr": log_likelihood_ratio(preds, target, self.sample_rate)}


class WeightedSpectralSlope(_MeanOverFiles):
    """Mean weighted spectral slope distance (Klatt 1982); lower is better."""

    higher_is_better = False
    measures, output = ("wss",), "wss"

    def score(self, preds, target):
        return {"wss": weighted_spectral_slope(preds, target, self.sample_rate)}


class CompositeMeasures(_MeanOverFiles):
    """Mean CSIG, CBAK and COVL (Hu & Loizou 2008), ``compute()`` -> ``{"csig", "cbak", "covl"}``."""

    higher_is_better = True
    measures, output = ("csig", "cbak", "covl"), None

    def score(self, preds, target):
        return composite_measures(preds, target, self.sample_rate)


class CSIG(CompositeMeasures):
    """Mean CSIG (signal distortion, 1-5). In a MetricCollection with CBAK and COVL it shares their
    computation after the first update (same states, so one compute group)."""

    output = "csig"


class CBAK(CompositeMeasures):
    """Mean CBAK (background intrusiveness, 1-5)."""

    output = "cbak"


class COVL(CompositeMeasures):
    """Mean COVL (overall quality, 1-5)."""

    output = "covl"


class RMSE(_MeanOverFiles):
    """Mean per-file RMSE; lower is better; ``sample_rate`` is optional."""

    higher_is_better = False
    needs_sample_rate = False
    measures, output = ("rmse",), "rmse"

    def score(self, preds, target):
        return {"rmse": rmse(preds, target)}


class PSNR(_MeanOverFiles):
    """Mean per-file PSNR in dB (peak = the reference's largest magnitude); ``sample_rate`` optional."""

    higher_is_better = True
    needs_sample_rate = False
    measures, output = ("psnr",), "psnr"

    def score(self, preds, target):
        return {"psnr": psnr(preds, target)}


STANDARD_METRICS = {"pesq_wb": PESQWideBand, "pesq_nb": PESQNarrowBand, "stoi": STOI, "estoi": ESTOI,
                    "si_sdr": SISDR, "snr": SNR, "seg_snr": SegmentalSNR, "llr": LogLikelihoodRatio,
                    "wss": WeightedSpectralSlope, "csig": CSIG, "cbak": CBAK, "covl": COVL}


def speech_quality_metrics(sample_rate: int, prefix: str | None = None) -> MetricCollection:
    """The standard set as one ``MetricCollection``: keys pesq_wb, pesq_nb, stoi, estoi, si_sdr,
    snr, seg_snr, llr, wss, csig, cbak, covl (``prefix``, e.g. ``"val/"``, is prepended)."""
    sample_rate = check_sample_rate(sample_rate)
    return MetricCollection({name: cls(sample_rate) for name, cls in STANDARD_METRICS.items()}, prefix=prefix)
