"""What every batch of the data layer is, and the one rule for its noise-only share.

Batches are dicts: ``"noisy"`` [B, T] (the network's input), ``"clean"`` [B, T],
``"has_clean"`` bool [B] (whether the row's ``"clean"`` is its truth: False for recordings
nobody has clean speech for), and where they apply ``"noise"`` [B, T], ``"noise_only"`` bool
[B], ``"lengths"`` [B] (valid samples of zero-padded rows), ``"label"``, ``"sigma"``,
``"snr_db"`` and metadata lists.
"""
from __future__ import annotations


def noise_only_rows(batch_size: int, share: float) -> int:
    """How many rows of each batch are noise-only (always its first rows). The share must give a
    whole number of rows: every batch then holds exactly that share, which the partitioned
    autoencoders' loss assumes (the thesis's "same proportion ... such that C does not change on
    each training iteration"); a share that would be rounded is refused with the shares that fit."""
    rows = share * batch_size
    if not 0 <= share <= 1 or abs(rows - round(rows)) > 1e-9:
        whole = [f"{k / batch_size:g}" for k in range(batch_size + 1)]
        raise ValueError(f"noise_only_share={share} of batch_size={batch_size} is {rows:g} rows; the share must "
                         f"be exact in every batch: use one of {', '.join(whole)} (or another batch_size)")
    return int(round(rows))
