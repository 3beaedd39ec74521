"""An independent NumPy re-implementation of the authors' TensorFlow graphs (their ``model.py``),
for parity tests of the converted networks. It follows their code operation by operation,
on their [batch, 1, time, channels] layout, not the zoo's:

- ``senet``: ``se_conv_0`` (3-tap, SAME), ``se_conv_1..12`` computed by ``signal_to_dilated``
  (zero-pad the time axis to a multiple of the dilation, reshape to [batch, dilation, time /
  dilation, channels]) -> 3-tap SAME convolution -> normalisation -> LReLU ->
  ``dilated_to_signal`` (undo the reshape, cut the padding), then ``se_conv_last`` and the 1x1
  ``se_fc_last`` with bias. Normalisation ``w0 * x + w1 * slim.batch_norm(x)`` with
  ``is_training=True``: moments over every axis but channels, of the tensor as the convolution
  left it (padding positions included), centre ``beta``, no scale, eps 0.001.
- ``lossnet``: ``loss_conv_0..12`` 3-tap SAME convolutions with stride 2, ``loss_conv_13``
  stride 1, ``slim.batch_norm`` (batch statistics or the moving averages), LReLU.

Nothing here imports zoo or torch.
"""
import numpy as np

EPS = 1e-3


def lrelu(x):
    return np.maximum(0.2 * x, x)


def conv_same(x, kernel, stride=1):
    """slim.conv2d (no bias) along axis 2 of NHWC ``x`` with a [1, k, C_in, C_out] kernel, SAME padding."""
    k = kernel.shape[1]
    n = x.shape[2]
    out_n = -(-n // stride)
    pad_total = max((out_n - 1) * stride + k - n, 0)
    left = pad_total // 2
    xp = np.pad(x, ((0, 0), (0, 0), (left, pad_total - left), (0, 0)))
    out = np.zeros(x.shape[:2] + (out_n, kernel.shape[3]), dtype=np.float64)
    for tap in range(k):
        taken = xp[:, :, tap:tap + (out_n - 1) * stride + 1:stride, :]
        out += np.einsum("bhwc,co->bhwo", taken, kernel[0, tap].astype(np.float64))
    return out


def batch_norm(x, beta, mean=None, var=None):
    if mean is None:
        mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    return (x - mean) / np.sqrt(var + EPS) + beta


def signal_to_dilated(signal, dilation):
    n = signal.shape[2]
    pad_elements = dilation - 1 - (n + dilation - 1) % dilation
    dilated = np.pad(signal, ((0, 0), (0, 0), (0, pad_elements), (0, 0)))
    dilated = dilated.reshape(signal.shape[0], -1, dilation, signal.shape[3])
    return dilated.transpose(0, 2, 1, 3), pad_elements


def dilated_to_signal(dilated, pad_elements):
    batch, dilation, n, channels = dilated.shape
    signal = dilated.transpose(0, 2, 1, 3).reshape(batch, 1, -1, channels)
    return signal[:, :, :n * dilation - pad_elements, :]


def senet(wave, variables):
    """wave [T] in [-1, 1] -> enhanced [T]; ``variables`` as read from se_model.ckpt."""
    def layer(x, scope):
        y = conv_same(x, variables[f"{scope}/weights"])
        normed = variables[f"{scope}/w0"] * y + variables[f"{scope}/w1"] * batch_norm(y, variables[f"{scope}/BatchNorm/beta"])
        return lrelu(normed)

    x = wave.astype(np.float64).reshape(1, 1, -1, 1)
    x = layer(x, "se_conv_0")
    for i in range(1, 13):
        dilated, pad_elements = signal_to_dilated(x, 2**i)
        x = dilated_to_signal(layer(dilated, f"se_conv_{i}"), pad_elements)
    x = layer(x, "se_conv_last")
    out = conv_same(x, variables["se_fc_last/weights"]) + variables["se_fc_last/biases"]
    return out.reshape(-1)


def lossnet(wave, variables, n_layers=14, batch_statistics=True):
    """wave [B, T] -> the 14 layer outputs [B, 1, T_m, C_m] of the authors' loss network."""
    x = wave.astype(np.float64)[:, None, :, None]
    outputs = []
    for i in range(n_layers):
        scope = f"loss_conv_{i}"
        y = conv_same(x, variables[f"{scope}/weights"], stride=2 if i < 13 else 1)
        if batch_statistics:
            y = batch_norm(y, variables[f"{scope}/BatchNorm/beta"])
        else:
            y = batch_norm(y, variables[f"{scope}/BatchNorm/beta"], variables[f"{scope}/BatchNorm/moving_mean"],
                           variables[f"{scope}/BatchNorm/moving_variance"])
        x = lrelu(y)
        outputs.append(x)
    return outputs
