"""Speech quality measures: functionals, torchmetrics ``Metric`` classes and per-file scoring.

Functionals take ``(preds, target, ...)`` -- the enhanced signal, then the clean reference -- as
mono numpy arrays or torch tensors and return a float. PESQ, STOI/ESTOI, SNR and SI-SDR come from
the field's packages (``pesq``, ``pystoi``, torchmetrics); segmental SNR, LLR, WSS and the
composite measures follow Loizou's MATLAB code as pysepm ports it, and are tested against pysepm.
"""
from .composite import composite_from_measures, composite_measures
from .distance import psnr, rmse
from .intelligibility import stoi_score
from .llr import log_likelihood_ratio
from .metric_classes import (
    CBAK,
    COVL,
    CSIG,
    ESTOI,
    PSNR,
    RMSE,
    SISDR,
    SNR,
    STOI,
    CompositeMeasures,
    LogLikelihoodRatio,
    PESQNarrowBand,
    PESQWideBand,
    SegmentalSNR,
    WeightedSpectralSlope,
    speech_quality_metrics,
)
from .perceptual import SILENT_OUTPUT_SCORE, pesq_score
from .quality import quality_scores
from .ratios import si_sdr, snr
from .scoring import MEASURES, score_file_pair, score_pairs
from .segmental import segmental_snr
from .wss import weighted_spectral_slope

__all__ = [
    "quality_scores", "score_file_pair", "score_pairs", "MEASURES",
    "pesq_score", "stoi_score", "si_sdr", "snr", "segmental_snr", "log_likelihood_ratio",
    "weighted_spectral_slope", "composite_measures", "composite_from_measures", "rmse", "psnr",
    "SILENT_OUTPUT_SCORE",
    "PESQWideBand", "PESQNarrowBand", "STOI", "ESTOI", "SISDR", "SNR", "SegmentalSNR", "LogLikelihoodRatio",
    "WeightedSpectralSlope", "CompositeMeasures", "CSIG", "CBAK", "COVL", "RMSE", "PSNR",
    "speech_quality_metrics",
]
