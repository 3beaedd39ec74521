"""The one batch schema of the data layer, and the one rule for its noise-only share.

Every DataModule of the zoo yields dict batches whose keys are named in :data:`BATCH_SCHEMA`
and declares the keys it always provides in a ``batch_keys`` class attribute. A model declares
the keys it needs in its own ``batch_keys``; ``zoo.module.DenoiserModule`` compares the two when
a fit starts (:func:`missing_keys_message`), so a model that needs ``"noise"`` fed by a data
module without it fails before the first step, with both names in the message. The data layer
never asks what a model is: data flows one way, data -> model step -> loss.

:func:`check_batch` checks one batch against the schema (types, dtypes, shapes); the tests run
it on the first batch of every DataModule.
"""
from __future__ import annotations

from typing import TypedDict

import torch

#: every key a batch may hold: what it is, its dtype kind and its shape (B rows, T samples,
#: C channels). A DataModule may add metadata lists (names, speakers ...) under other keys.
BATCH_SCHEMA: dict[str, str] = {
    "noisy": "float [B, T] or [B, C, T]: the network's input (noisy speech, or a noise-only clip)",
    "clean": "float [B, T]: the clean target; a zero placeholder on rows whose has_clean is False",
    "has_clean": "bool [B]: whether the row's clean (and noise) are its truth; False for recordings "
                 "nobody has clean speech for",
    "noise": "float [B, T] or [B, C, T]: the noise component (noisy - clean where has_clean)",
    "noise_only": "bool [B]: noise-only rows (a soft label: the clean speech is silence)",
    "lengths": "int [B]: valid samples of zero-padded rows",
    "snr_db": "float [B]: the mixing SNR",
    "sigma": "float [B]: the noise standard deviation of synthetic signals",
    "label": "int [B]: a class index (noise level of synthetic signals, a task's class)",
    "conditions": "dict of float tensors [B, ...]: extra inputs of forward(wave, **conditions)",
}


class DenoisingBatch(TypedDict, total=False):
    """:data:`BATCH_SCHEMA` as a type, for annotations."""

    noisy: torch.Tensor
    clean: torch.Tensor
    has_clean: torch.Tensor
    noise: torch.Tensor
    noise_only: torch.Tensor
    lengths: torch.Tensor
    snr_db: torch.Tensor
    sigma: torch.Tensor
    label: torch.Tensor
    conditions: dict


_FLOAT_WAVES = ("noisy", "clean", "noise")
_PER_ROW = {"has_clean": torch.bool, "noise_only": torch.bool, "lengths": None, "snr_db": None, "sigma": None,
            "label": None}


class BatchSchemaError(ValueError):
    """A batch does not follow ``BATCH_SCHEMA``."""


def check_batch(batch: dict, where: str = "batch") -> None:
    """Raise :class:`BatchSchemaError` naming the key when ``batch`` breaks :data:`BATCH_SCHEMA`."""
    if not isinstance(batch, dict) or "noisy" not in batch:
        raise BatchSchemaError(f"{where}: a batch is a dict with at least 'noisy'; got "
                               f"{type(batch).__name__}{' with keys ' + str(sorted(batch)) if isinstance(batch, dict) else ''}")
    noisy = batch["noisy"]
    if not torch.is_tensor(noisy) or not noisy.is_floating_point() or noisy.dim() not in (2, 3):
        raise BatchSchemaError(f"{where}: 'noisy' must be a float tensor [B, T] or [B, C, T], got "
                               f"{_describe(noisy)}")
    rows, length = noisy.shape[0], noisy.shape[-1]
    for key in _FLOAT_WAVES[1:]:
        if key in batch:
            value = batch[key]
            if not torch.is_tensor(value) or not value.is_floating_point() or value.shape[0] != rows \
                    or value.shape[-1] != length:
                raise BatchSchemaError(f"{where}: {key!r} must be a float tensor of {rows} rows of {length} samples "
                                       f"like 'noisy', got {_describe(value)}")
    for key, dtype in _PER_ROW.items():
        if key in batch:
            value = batch[key]
            if not torch.is_tensor(value) or tuple(value.shape) != (rows,) or (dtype is not None and value.dtype != dtype):
                want = f"{'a bool' if dtype is torch.bool else 'a'} tensor [{rows}]"
                raise BatchSchemaError(f"{where}: {key!r} must be {want} (one value per row), got {_describe(value)}")
    if "conditions" in batch and not isinstance(batch["conditions"], dict):
        raise BatchSchemaError(f"{where}: 'conditions' must be a dict of tensors, got {_describe(batch['conditions'])}")


def missing_keys_message(model_name: str, needed, data_name: str, provided) -> str | None:
    """The error a fit start reports when the data (``data_name``) does not provide every key the
    model needs (None when it does)."""
    missing = [key for key in needed if key not in provided]
    if not missing:
        return None
    return (f"{model_name} needs batch keys {', '.join(map(repr, missing))} that {data_name} does not provide "
            f"(it provides {', '.join(map(repr, provided))}). Train it on a data module that does "
            f"(zoo.data: see BATCH_SCHEMA), or override {model_name}.batch_keys if the model can do without them.")


def _describe(value) -> str:
    if torch.is_tensor(value):
        return f"{str(value.dtype).replace('torch.', '')} tensor of shape {list(value.shape)}"
    return type(value).__name__


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
