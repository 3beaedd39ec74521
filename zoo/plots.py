"""Figures a person would rather look at than read: spectrograms before and after, score
tranches, training curves."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from .audio import atomic_output  # noqa: E402
from .frontends.stft import stft  # noqa: E402

#: the spectrogram's FFT size (32 ms at 16 kHz) and hop (a quarter of it)
SPECTROGRAM_N_FFT = 512


def log_spectrogram(wave: torch.Tensor, sample_rate: int, n_fft: int = SPECTROGRAM_N_FFT) -> torch.Tensor:
    """Power spectrogram in dB, ``[bins, frames]``, of a mono signal ([T] or [1, T]): periodic Hann
    frames of ``n_fft`` samples (32 ms at 16 kHz), hop ``n_fft // 4``, centred and mirrored at the
    ends (torch.stft's framing, through :func:`zoo.frontends.stft.stft`)."""
    wave = wave.reshape(-1).float()
    spec = stft(wave, n_fft, n_fft // 4, center=True, pad_mode="reflect", tail="drop").transpose(-1, -2)
    return 10 * torch.log10(spec.abs() ** 2 + 1e-10)


def spectrogram_figure(panels: dict[str, torch.Tensor], sample_rate: int, path, title: str = "") -> Path:
    """One spectrogram per panel (e.g. noisy / enhanced / clean), shared colour scale, saved as PNG."""
    specs = {name: log_spectrogram(wave, sample_rate) for name, wave in panels.items()}
    top = max(float(s.max()) for s in specs.values())
    fig, axes = plt.subplots(len(specs), 1, figsize=(9, 2.4 * len(specs)), sharex=True, squeeze=False)
    for ax, (name, spec) in zip(axes[:, 0], specs.items()):
        seconds = spec.shape[1] * (SPECTROGRAM_N_FFT // 4) / sample_rate
        image = ax.imshow(spec.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                          extent=(0, seconds, 0, sample_rate / 2000))
        ax.set_ylabel("kHz")
        ax.set_title(name, loc="left", fontsize=10)
    axes[-1, 0].set_xlabel("time (s)")
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="dB", shrink=0.8)
    if title:
        fig.suptitle(title)
    return _save(fig, Path(path))


def tranche_figure(summary: dict, rows: list[dict], out) -> dict[str, Path]:
    """The feature-loss paper's Figs. 1 and 2: the noisy input's CBAK distribution with its
    octile edges, and SNR / SIG / BAK / OVL per tranche for every system."""
    out = Path(out)
    paths = {}
    edges = summary["tranches"]["edges"]
    noisy_bak = [r["cbak"] for r in rows if r["system"] == "noisy"]
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.hist(noisy_bak, bins=30, color="0.6")
    for edge in edges:
        ax.axvline(edge, color="red", linestyle="--", linewidth=1)
    ax.set_xlabel("composite background score (CBAK) of the noisy input")
    ax.set_ylabel("files")
    ax.set_title(f"{summary['data']}: 8 tranches of equal size", fontsize=9)
    fig.tight_layout()  # a 3-inch-high figure: without it the x-axis label falls off the bottom edge
    paths["bak_distribution"] = _save(fig, out / "bak_distribution.png")

    measures = [("snr", "SNR (dB)"), ("csig", "SIG (CSIG)"), ("cbak", "BAK (CBAK)"), ("covl", "OVL (COVL)")]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
    tranches = list(range(1, len(edges) + 2))
    for ax, (measure, title) in zip(axes, measures):
        for system, per in summary["tranches"]["means"].items():
            ax.plot(tranches, per[measure], marker="o", label=system,
                    linestyle="--" if system == "noisy" else "-")
        ax.set_title(title)
        ax.set_xlabel("tranche (1 = hardest)")
        ax.set_xticks(tranches)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    paths["tranches"] = _save(fig, out / "tranches.png")
    return paths


def training_figure(rows: list[dict], path, title: str = "", input_si_sdr: float | None = None,
                    initial_lr: float | None = None) -> Path:
    """Training loss (each logged step, and a running mean) and validation scores against the
    step, from the rows of Lightning ``CSVLogger`` metrics files (``zoo.card_from_checkpoint.read_metrics``).
    ``input_si_sdr``: the unprocessed validation input's SI-SDR, drawn as the line to beat.
    When the rows log ``lr`` (``zoo.train.LearningRateDecay``), a third panel draws it; steps
    before its first logged value (a run that resumed with the callback added) are drawn at
    ``initial_lr``, the configured rate, dashed."""
    train = [(int(r["step"]), float(r["train/loss"])) for r in rows if r.get("train/loss")]
    val = {key: [(int(r["step"]), float(r[key])) for r in rows if r.get(key)] for key in ("val/loss", "val/si_sdr")}
    rates = [(int(r["step"]), float(r["lr"])) for r in rows if r.get("lr")]
    if rates:
        fig, (top, bottom, rate_axis) = plt.subplots(3, 1, figsize=(8, 7.5), sharex=True,
                                                     gridspec_kw={"height_ratios": [3, 3, 1.4]})
    else:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    if train:
        steps, losses = zip(*train)
        # a short run logs a few steps: markers, or a single step would draw nothing (a line of one point)
        few = {"marker": "o", "markersize": 3} if len(losses) < 30 else {}
        top.plot(steps, losses, color="0.75" if len(losses) >= 40 else "C0", lw=0.8, label="train loss (logged steps)",
                 **few)
        window = max(1, len(losses) // 20)
        if window > 1:  # a mean of one step is the loss itself, drawn over it
            running = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1])
                       for i in range(len(losses))]
            top.plot(steps, running, color="C0", label=f"running mean of {window}")
    if val["val/loss"]:
        top.plot(*zip(*val["val/loss"]), "o-", color="C1", label="validation loss")
    top.set_ylabel("loss")
    top.legend(fontsize=8)
    if val["val/si_sdr"]:
        bottom.plot(*zip(*val["val/si_sdr"]), "o-", color="C2", label="model")
    if input_si_sdr is not None:
        bottom.axhline(input_si_sdr, color="0.4", ls="--", lw=1, label=f"unprocessed input ({input_si_sdr:.1f} dB)")
        bottom.legend(fontsize=8)
    bottom.set_ylabel("validation SI-SDR (dB)")
    last_axis = bottom
    if rates:
        rate_axis.plot(*zip(*rates), color="C3", lw=1.2, label="logged")
        if initial_lr is not None and rates[0][0] > 0:
            rate_axis.plot([0, rates[0][0]], [initial_lr, initial_lr], color="C3", ls="--", lw=1,
                           label="configured (not logged)")
        rate_axis.set_yscale("log")
        rate_axis.set_ylabel("learning rate")
        rate_axis.legend(fontsize=8, loc="lower left")
        last_axis = rate_axis
    last_axis.set_xlabel("training step")
    if not train and not any(val.values()):
        top.text(0.5, 0.5, "nothing logged yet: no training step reached log_every_n_steps and no validation ran",
                 ha="center", va="center", transform=top.transAxes, fontsize=9, wrap=True)
    if title:
        fig.suptitle(title)
    return _save(fig, Path(path))


def _save(fig, path: Path) -> Path:
    with atomic_output(path) as temporary:
        # bbox_inches="tight": the canvas grows to every label, so none is cut at an edge
        fig.savefig(temporary, dpi=100, format="png", bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return path
