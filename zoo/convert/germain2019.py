"""The authors' released TensorFlow networks of speech-denoising-deep-feature-losses.txt, in zoo layout.

- ``se_model.ckpt`` (their "senet", the CAN of sec. II-A at W=64, trained with the deep feature
  loss on VoiceBank-DEMAND): ``se_conv_{0..12}`` and ``se_conv_last`` (3-tap convolutions
  ``[1, 3, C_in, 64]``, no bias; ``w0``, ``w1``, ``BatchNorm/beta`` of the adaptive
  normalisation ``w0 * x + w1 * BN(x)``), ``se_fc_last`` (the 1x1 output convolution).
- ``loss_model.ckpt`` (their feature-loss network, appendix B, pretrained on DCASE 2016 scenes and
  CHiME-Home tags): ``loss_conv_{0..13}`` (weights ``[1, 3, C_in, C_out]``, ``BatchNorm/beta``,
  ``moving_mean``, ``moving_variance``).

What changes is the layout only: a slim ``conv2d`` kernel ``[1, k, C_in, C_out]`` on
``[batch, 1, time, channels]`` becomes a ``Conv1d`` weight ``[C_out, C_in, k]`` on
``[batch, channels, time]`` (both are cross-correlations); ``w0``/``w1`` become ``alpha``/``beta``;
``slim.batch_norm`` (centre, no scale) becomes ``BatchNorm1d`` with its scale fixed at 1. No
value is altered. The CAN's checkpoint holds no moving averages (the authors' inference uses the
input's statistics), so its ``running_mean``/``running_var`` are the PyTorch defaults (0 and 1)
and unused in ``normalization="input"``.
"""
from __future__ import annotations

import numpy as np
import torch

from .tf_bundle import BundleError, TensorBundle

CAN_LAYERS = [f"se_conv_{i}" for i in range(13)] + ["se_conv_last"]
LOSS_LAYERS = [f"loss_conv_{i}" for i in range(14)]
BN_EPS = 1e-3  # slim.batch_norm's default epsilon


def _conv1d_weight(kernel: np.ndarray) -> torch.Tensor:
    """slim conv2d kernel [1, k, C_in, C_out] -> Conv1d weight [C_out, C_in, k]."""
    if kernel.ndim != 4 or kernel.shape[0] != 1:
        raise BundleError(f"expected a [1, k, C_in, C_out] kernel, got shape {kernel.shape}")
    return torch.from_numpy(np.ascontiguousarray(kernel[0].transpose(2, 1, 0)))


def kind_of(bundle: TensorBundle) -> str:
    """"can" or "loss_network", from the variable names; a clear error for anything else."""
    names = set(bundle.names())
    if all(f"{layer}/weights" in names for layer in CAN_LAYERS) and "se_fc_last/weights" in names:
        return "can"
    if all(f"{layer}/weights" in names for layer in LOSS_LAYERS):
        return "loss_network"
    raise BundleError(f"{bundle.prefix} is a TensorFlow checkpoint, but not one of the released networks of "
                      "Germain, Chen & Koltun 2019 (no se_conv_*/se_fc_last or loss_conv_0..13 variables)")


def can_state_dict(bundle: TensorBundle, prefix: str = "network.") -> tuple[dict[str, torch.Tensor], dict]:
    """The senet's variables as a ``ContextAggregationNetwork`` state dict, and its init args."""
    state: dict[str, torch.Tensor] = {}
    width = None
    for i, layer in enumerate(CAN_LAYERS):
        weight = _conv1d_weight(bundle[f"{layer}/weights"])
        width = weight.shape[0]
        body = f"{prefix}body.{3 * i}"
        norm = f"{prefix}body.{3 * i + 1}"
        state[f"{body}.weight"] = weight
        state[f"{norm}.alpha"] = torch.tensor(float(bundle[f"{layer}/w0"]))
        state[f"{norm}.beta"] = torch.tensor(float(bundle[f"{layer}/w1"]))
        state[f"{norm}.bn.weight"] = torch.ones(width)
        state[f"{norm}.bn.bias"] = torch.from_numpy(bundle[f"{layer}/BatchNorm/beta"])
        state[f"{norm}.bn.running_mean"] = torch.zeros(width)
        state[f"{norm}.bn.running_var"] = torch.ones(width)
        state[f"{norm}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    state[f"{prefix}output.weight"] = _conv1d_weight(bundle["se_fc_last/weights"])
    state[f"{prefix}output.bias"] = torch.from_numpy(bundle["se_fc_last/biases"])
    dilations = [2**i for i in range(13)] + [1]
    init_args = {"width": int(width), "dilations": dilations, "kernel_size": 3, "wave_scale": 1.0,
                 "normalization": "input", "norm_eps": BN_EPS}
    return state, init_args


def loss_network_state_dict(bundle: TensorBundle) -> tuple[dict[str, torch.Tensor], dict]:
    """The loss network's 14 layers as a ``FeatureLossNet`` state dict (no classifier heads), and its init args."""
    state: dict[str, torch.Tensor] = {}
    for i, layer in enumerate(LOSS_LAYERS):
        weight = _conv1d_weight(bundle[f"{layer}/weights"])
        width = weight.shape[0]
        state[f"layers.{i}.0.weight"] = weight
        state[f"layers.{i}.1.weight"] = torch.ones(width)
        state[f"layers.{i}.1.bias"] = torch.from_numpy(bundle[f"{layer}/BatchNorm/beta"])
        state[f"layers.{i}.1.running_mean"] = torch.from_numpy(bundle[f"{layer}/BatchNorm/moving_mean"])
        state[f"layers.{i}.1.running_var"] = torch.from_numpy(bundle[f"{layer}/BatchNorm/moving_variance"])
        state[f"layers.{i}.1.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    init_args = {"n_layers": len(LOSS_LAYERS), "base_width": 32, "double_every": 5, "task_classes": [],
                 "padding": "tf_same", "norm_eps": BN_EPS, "normalization": "batch"}
    return state, init_args
