"""Figures a person would rather look at than read: spectrograms before and after."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from .audio import atomic_output  # noqa: E402


def log_spectrogram(wave: torch.Tensor, sample_rate: int, n_fft: int = 512) -> torch.Tensor:
    """Power spectrogram in dB of a mono signal ([T] or [1, T]), 32 ms Hann frames at 16 kHz."""
    wave = wave.reshape(-1).float()
    spec = torch.stft(wave, n_fft, hop_length=n_fft // 4, window=torch.hann_window(n_fft), return_complex=True)
    return 10 * torch.log10(spec.abs() ** 2 + 1e-10)


def spectrogram_figure(panels: dict[str, torch.Tensor], sample_rate: int, path, title: str = "") -> Path:
    """One spectrogram per panel (e.g. noisy / enhanced / clean), shared colour scale, saved as PNG."""
    specs = {name: log_spectrogram(wave, sample_rate) for name, wave in panels.items()}
    top = max(float(s.max()) for s in specs.values())
    fig, axes = plt.subplots(len(specs), 1, figsize=(9, 2.4 * len(specs)), sharex=True, squeeze=False)
    for ax, (name, spec) in zip(axes[:, 0], specs.items()):
        seconds = spec.shape[1] * 128 / sample_rate
        image = ax.imshow(spec.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                          extent=(0, seconds, 0, sample_rate / 2000))
        ax.set_ylabel("kHz")
        ax.set_title(name, loc="left", fontsize=10)
    axes[-1, 0].set_xlabel("time (s)")
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="dB", shrink=0.8)
    if title:
        fig.suptitle(title)
    path = Path(path)
    with atomic_output(path) as temporary:
        fig.savefig(temporary, dpi=100, format="png")
    plt.close(fig)
    return path
