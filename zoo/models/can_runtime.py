"""Fast CPU inference for the context aggregation network: layer-wise streaming in time blocks.

``fast_can(...)`` (or :meth:`CANRuntime.from_network`) turns the eval-mode CAN into a callable
``wave [B, T] -> wave [B, T]`` with the contract of ``ContextAggregationNetwork.forward`` in eval
mode: samples in [-1, 1] in and out, ``wave_scale`` applied inside, zero padding at the edges of
the signal for every layer. It takes the network's parameters as plain tensors: per layer the
convolution weight ``[C_out, C_in, k]``, its dilation and the folded per-channel ``scale [C_out]``
and ``shift [C_out]`` of the normalisation after it (``AdaptiveNorm.folded()`` for the running
statistics; any other per-file statistics can be folded and passed in the same way), then the
1x1 output convolution. Nothing reads batch-norm buffers here.

Why each trick is there (measured on the 2-core Zen 4 this project runs on, W=64, 30 s of 16 kHz
speech, network call only, 2 threads, with the machine otherwise quiet: reference eval forward
2.79 s; the same layers as channels-last matrix products over the whole signal 1.73-1.95 s; this
pipeline with 2 intra-op threads 1.6 s in fp32 and 1.5 s in bf16; ``benchmarks/speed.py
--can-variants`` has the end-to-end table, with the worker mode below):

* **Keep activations in cache: layer-wise streaming.** Layer after layer over the whole signal
  writes and re-reads a 123 MB activation (30 s x 64 channels x fp32) 14 times, and a dilated
  convolution reads it at three offsets up to 2 x 4096 rows apart. Here every layer keeps only a
  ring buffer of its recent output (about ``2 * dilation`` rows plus a few blocks) and the layers
  advance together, one time block each per step, like a pipeline (the layer-wise streaming of
  dilated convolutions used for fast WaveNet generation, with blocks of ``block`` samples instead
  of one). Every activation is computed once, with no receptive-field recomputation, and what a
  layer reads was written at most ``2 * dilation + 2 * block`` rows before, so the working set
  (about 15 MB in all at W=64 and batch 1) stays in the last-level cache.
* **Channels-last (time-major) ring buffers make each tap a plain matrix product.** With rows
  ``[time, batch, channel]`` the three taps of a dilated 3x1 convolution are three contiguous
  row ranges of the same buffer, so fp32 layers are three ``addmm`` calls (bias included in the
  first) accumulating into the output block, with no im2col copy and no layout conversion. The
  batch is folded into the rows, so a batch costs no extra calls.
* **A mirrored tail instead of wrap-around splitting.** Each ring has ``block`` extra rows that
  repeat its first ``block`` rows, so any read window of up to ``block`` rows is one contiguous
  slice; a copy of one block per lap of the ring pays for it.
* **LeakyReLU in place** on the block just written, while it is in cache.
* **One worker per core, one intra-op thread each** (``workers``, default: one per
  ``torch.get_num_threads()``). A W=64 block product takes 0.1-0.2 ms, so with intra-op threads
  every one of the ~7000 products per 10 s of audio ends in an OpenMP barrier; measured on the
  2-core machine while other jobs ran, that made the pipeline 2x to 50x slower than one thread
  per piece (10 s in bf16: 12-57 s against 0.6-0.75 s). Workers take independent pieces instead: batch rows, or for one row stretches of time
  computed with the receptive field's ``context`` samples of input on each side (3.4 % more
  work for 30 s in two pieces), so the result is the same. ``torch.set_num_threads`` is set to
  1 for the duration of the call and restored after it (process-wide, as the setting is).
* **bf16** (``mode="bf16"``): activations are stored in bfloat16 and each layer is a single
  matrix product over the three taps concatenated (im2col, ``K = 3 C``) with fp32 accumulation
  inside oneDNN's AVX-512 BF16 kernel; half the bytes and twice the arithmetic rate. The input
  layer and the 1x1 output layer stay fp32 (they are cheap, and rounding the 16-bit input or the
  output to 8 mantissa bits would cap the SNR). Output is within the stated 40 dB SNR of fp32
  (measured figures in ``benchmarks/speed.py``'s report), not bit-equal.

Also here: :func:`folded_module` (the folded network as plain ``Conv1d``/``LeakyReLU`` layers,
for ``torch.compile`` or export) and :class:`ONNXRuntimeCAN` (that module exported with
``torch.onnx.export`` and run by ONNX Runtime, optionally statically quantised to int8; int8 is
fast but about 28 dB SNR from fp32, below the 40 dB asked of the fast paths).

``block`` is a tuning knob (rows per step: smaller blocks pay Python and dispatch per call, bigger
ones move the per-step working set out of L2; 1024 to 4096 measured within 15 % of each other).
The result does not depend on it beyond float rounding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

MODES = ("fp32", "bf16")


@dataclass
class _Layer:
    weight: torch.Tensor  # fp32: [k, C_in, C_out] (one matrix per tap); bf16: [k * C_in, C_out]
    bias: torch.Tensor  # [C_out], in the layer's compute dtype
    dilation: int
    taps: int
    dtype: torch.dtype  # storage dtype of this layer's output (computed in ``weight.dtype``)

    @property
    def halo(self) -> int:
        return self.dilation * (self.taps - 1) // 2


class _Ring:
    """Rows ``[t, batch, channel]`` of one layer's output for a sliding range of times ``t``.

    Global row ``t`` lives at ``t % rows``; rows ``[rows, rows + mirror)`` repeat rows ``[0,
    mirror)``, so a window of up to ``mirror`` rows starting anywhere is one contiguous slice.
    Starts out zero, which is the zero padding before ``t = 0`` the first consumer reads."""

    def __init__(self, rows: int, mirror: int, batch: int, channels: int, dtype: torch.dtype):
        self.rows, self.mirror = rows, mirror
        self.data = torch.zeros(rows + mirror, batch, channels, dtype=dtype)

    def window(self, start: int, n: int) -> torch.Tensor:
        q = start % self.rows
        return self.data[q:q + n]

    def written(self, start: int, n: int) -> None:
        q = start % self.rows
        if q < self.mirror:
            end = min(q + n, self.mirror)
            self.data[self.rows + q:self.rows + end].copy_(self.data[q:end])


class _Input:
    """The scaled input signal, time-major and zero-padded, read like a ring."""

    def __init__(self, wave: torch.Tensor, scale: float, left: int, right: int):
        batch, length = wave.shape
        self.left = left
        self.data = torch.zeros(left + length + right, batch, 1)
        self.data[left:left + length, :, 0] = wave.t() * scale

    def window(self, start: int, n: int) -> torch.Tensor:
        return self.data[self.left + start:self.left + start + n]


class CANRuntime:
    """The eval-mode CAN as a streaming block pipeline; see the module docstring.

    ``weights[i]``: conv weight ``[C_out, C_in, k]`` (odd ``k``, no bias); ``scales[i]``,
    ``shifts[i]``: the folded normalisation after it (``y = scale * conv(x) + shift``), ``None``
    for identity; ``out_weight [1, C, 1]`` and ``out_bias [1]``: the 1x1 output convolution.
    """

    def __init__(self, weights: Sequence[torch.Tensor], dilations: Sequence[int],
                 scales: Sequence[torch.Tensor | None] | None, shifts: Sequence[torch.Tensor | None] | None,
                 out_weight: torch.Tensor, out_bias: torch.Tensor | None, wave_scale: float = 2.0**15, *,
                 negative_slope: float = 0.2, mode: str = "fp32", block: int = 1024, workers: int | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if len(weights) != len(dilations) or not weights:
            raise ValueError("one dilation per convolution weight, and at least one layer")
        scales = list(scales) if scales is not None else [None] * len(weights)
        shifts = list(shifts) if shifts is not None else [None] * len(weights)
        self.mode, self.block, self.workers = mode, int(block), workers
        self.context = sum(int(d) * (w.shape[-1] - 1) // 2 for w, d in zip(weights, dilations))
        self.wave_scale, self.negative_slope = float(wave_scale), float(negative_slope)
        # Per-row statistics (scale/shift [B, W], "input" normalisation) give each batch row its own
        # folded weights, so rows then run one after the other; shared ones fold once for all rows.
        rows = {t.shape[0] for t in (*scales, *shifts) if t is not None and t.dim() == 2}
        if len(rows) > 1:
            raise ValueError(f"per-row scales and shifts disagree on the number of rows: {sorted(rows)}")
        self.rows = rows.pop() if rows else None

        def row(t, r):
            return None if t is None else (t[r] if t.dim() == 2 else t)

        with torch.no_grad():
            self.pipelines = [self._fold(weights, dilations, [row(t, r) for t in scales], [row(t, r) for t in shifts])
                              for r in range(self.rows or 1)]
            self.out_weight = out_weight.detach().float().cpu().reshape(1, -1).t().contiguous()  # [C, 1]
            self.out_bias = (out_bias.detach().float().cpu().reshape(1) if out_bias is not None
                             else torch.zeros(1))

    def _fold(self, weights, dilations, scales, shifts) -> list[_Layer]:
        layers = []
        for i, (w, d, s, b) in enumerate(zip(weights, dilations, scales, shifts)):
            w = w.detach().float().cpu()
            c_out, c_in, k = w.shape
            if k % 2 == 0:
                raise ValueError(f"layer {i}: only odd kernel sizes keep the length ('same' padding)")
            if s is not None:
                w = w * s.detach().float().cpu().reshape(c_out)[:, None, None]
            bias = b.detach().float().cpu().reshape(c_out) if b is not None else torch.zeros(c_out)
            taps = w.permute(2, 1, 0).contiguous()  # [k, C_in, C_out]
            # The first layer (C_in = 1) reads the 16-bit input; it is computed in fp32 in every mode.
            dtype = torch.bfloat16 if (self.mode == "bf16" and i > 0) else torch.float32
            store = torch.bfloat16 if self.mode == "bf16" else torch.float32
            if dtype == torch.bfloat16 or c_in == 1:
                taps = taps.reshape(k * c_in, c_out)  # one product over the concatenated taps
            layers.append(_Layer(taps.to(dtype).contiguous(), bias.to(dtype), int(d), k, store))
        return layers

    @classmethod
    def from_network(cls, network, statistics=None, **options) -> "CANRuntime":
        """From a ``ContextAggregationNetwork`` in eval mode. Without ``statistics`` each layer's
        running statistics are folded (``AdaptiveNorm.folded()``, the network's own eval path for
        ``"batch"`` and ``"calibrated"`` normalisation); ``statistics``: per layer ``(mean, var)``,
        each ``[W]`` or ``[B, W]`` (``"input"`` normalisation: the input's own, e.g. from
        ``network.measure_statistics``), folded with ``AdaptiveNorm.affine_for``."""
        layers = list(network.body)
        convs, norms = layers[0::3], layers[1::3]
        with torch.no_grad():
            if statistics is not None:
                folded = [norm.affine_for(mean.float(), var.float()) for norm, (mean, var) in zip(norms, statistics)]
            elif getattr(network, "normalization", "batch") == "input":
                raise ValueError("a network with 'input' normalisation needs the input's statistics "
                                 "(statistics=network.measure_statistics(...))")
            else:
                folded = [norm.folded() for norm in norms]
        return cls([c.weight for c in convs], [c.dilation[0] for c in convs], [s for s, _ in folded],
                   [b for _, b in folded], network.output.weight, network.output.bias, network.wave_scale,
                   negative_slope=layers[2].negative_slope, **options)

    @torch.no_grad()
    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() != 2:
            raise ValueError(f"expected wave [B, T], got shape {tuple(wave.shape)}")
        device, dtype = wave.device, wave.dtype
        wave = wave.detach().to("cpu", torch.float32)
        batch, length = wave.shape
        if self.rows is not None and batch != self.rows:
            raise ValueError(f"per-row statistics for {self.rows} rows, input has {batch}")
        if length == 0:
            return wave.new_zeros(batch, 0).to(device, dtype)
        out = torch.empty(batch, length)
        jobs = self._jobs(batch, length)
        if (self.workers or torch.get_num_threads()) <= 1:  # workers=1: the caller's intra-op threads
            for job in jobs:
                self._job(job, wave, out)
            return out.to(device, dtype)
        # One Python thread per piece (at most ``workers``), one intra-op thread each, and one intra-op thread also when
        # there is a single piece (an input shorter than four receptive fields per worker): no
        # OpenMP barrier per block product. Measured with other jobs on the 2 cores, 16384 samples
        # took 11 s in bf16 with 2 intra-op threads (every barrier waits for a descheduled thread)
        # and 0.1 s with one.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            if len(jobs) == 1:
                self._job(jobs[0], wave, out)
            else:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(min(len(jobs), self.workers or threads)) as pool:
                    list(pool.map(lambda job: self._job(job, wave, out), jobs))
        finally:
            torch.set_num_threads(threads)
        return out.to(device, dtype)

    def _jobs(self, batch: int, length: int) -> list[tuple[int, int, int, int]]:
        """Independent pieces ``(first row, rows, first output, end output)``: rows, then (for one
        row) stretches of time, each computed with ``context`` samples of input on both sides."""
        workers = self.workers or torch.get_num_threads()
        if workers <= 1:
            return [(0, batch, 0, length)] if self.rows is None else [(r, 1, 0, length) for r in range(batch)]
        if batch > 1 or self.rows is not None:  # rows: at most ``workers`` threads at a time
            return [(r, 1, 0, length) for r in range(batch)]
        pieces = min(workers, length // (4 * self.context + 1) or 1)  # halo overhead at most 1/2
        bounds = [length * j // pieces for j in range(pieces + 1)]
        return [(0, 1, a, b) for a, b in zip(bounds[:-1], bounds[1:])]

    def _job(self, job: tuple[int, int, int, int], wave: torch.Tensor, out: torch.Tensor) -> None:
        row, rows, a, b = job
        start, end = max(0, a - self.context), min(wave.shape[-1], b + self.context)
        pipeline = self.pipelines[0 if self.rows is None else row]
        # inference mode is per thread: a worker enters it itself (``out`` may be an inference tensor)
        with torch.inference_mode():
            piece = self._run(pipeline, wave[row:row + rows, start:end])
            out[row:row + rows, a:b] = piece[:, a - start:b - start]

    def _run(self, layers: list[_Layer], wave: torch.Tensor) -> torch.Tensor:
        batch, length = wave.shape
        nb = self.block
        n_layers = len(layers)
        # halo each consumer reads from ring i (ring i holds layer i's output); the output conv is 1x1
        halos = [layer.halo for layer in layers[1:]] + [0]
        source = _Input(wave, self.wave_scale, layers[0].halo, layers[0].halo + nb)
        rings = []
        for layer, halo in zip(layers, halos):
            rows = nb * (2 * -(-halo // nb) + 2)
            rings.append(_Ring(rows, nb, batch, layer.weight.shape[-1], layer.dtype))
        # every layer's output is needed up to T + the next layer's halo (zeros beyond T)
        ends = [-(-(length + halo) // nb) * nb for halo in halos]
        front = [0] * n_layers  # rows of each layer's output written so far (multiples of nb)
        out = torch.empty(length, batch)
        widest = max(max(layer.weight.shape) for layer in layers)
        # im2col columns by dtype of what they read, and fp32 rows for a layer stored in bf16
        scratch = {dt: torch.empty(nb, batch, widest, dtype=dt) for dt in (torch.float32, torch.bfloat16)}
        scratch["rows"] = torch.empty(nb, batch, widest)
        as_fp32 = torch.empty(nb, batch, rings[-1].data.shape[-1]) if layers[-1].dtype != torch.float32 else None
        stalled = 0
        while front[-1] < ends[-1]:
            progressed = False
            for i, layer in enumerate(layers):
                s = front[i]
                if s >= ends[i]:
                    continue
                h = layer.halo
                valid = min(s + nb, length) - s  # rows of this block inside the signal
                if valid > 0 and i > 0 and front[i - 1] < min(s + valid + h, ends[i - 1]):
                    continue  # input not there yet
                if i + 1 < n_layers and s + nb - rings[i].rows > front[i + 1] - halos[i]:
                    continue  # the consumer still needs the rows this block would overwrite
                ring = rings[i]
                dst = ring.window(s, nb)
                if valid > 0:
                    self._layer(layer, source if i == 0 else rings[i - 1], s, valid, dst, scratch)
                if valid < nb:
                    dst[max(valid, 0):].zero_()
                ring.written(s, nb)
                front[i] = s + nb
                progressed = True
                if i == n_layers - 1 and valid > 0:
                    last = dst[:valid]
                    if as_fp32 is not None:
                        last = as_fp32[:valid].copy_(last)
                    torch.addmm(self.out_bias, last.reshape(valid * batch, -1), self.out_weight,
                                out=out[s:s + valid].view(valid * batch, 1))
            stalled = 0 if progressed else stalled + 1
            if stalled > 1:
                raise RuntimeError("CAN runtime schedule made no progress (ring too small)")
        return out.t().div_(self.wave_scale)

    def _layer(self, layer: _Layer, src, s: int, n: int, dst: torch.Tensor, scratch: dict) -> None:
        """Rows ``[s, s + n)`` of one layer's output, LReLU applied, into ``dst[:n]``."""
        batch = dst.shape[1]
        d, k = layer.dilation, layer.taps
        windows = [src.window(s + (j - (k - 1) // 2) * d, n) for j in range(k)]
        c_out = layer.weight.shape[-1]
        # a layer computed in fp32 whose output is stored in bf16 (the first one in bf16 mode)
        target = dst[:n] if dst.dtype == layer.weight.dtype else scratch["rows"][:n, :, :c_out]
        flat = target.view(n * batch, c_out)
        if layer.weight.dim() == 2:  # im2col: one product over the concatenated taps
            k_in = layer.weight.shape[0]
            cols = torch.cat(windows, dim=-1, out=scratch[windows[0].dtype][:n, :, :k_in])
            if cols.dtype != layer.weight.dtype:
                cols = cols.to(layer.weight.dtype)
            torch.addmm(layer.bias, cols.view(n * batch, k_in), layer.weight, out=flat)
        else:  # fp32: one accumulating product per tap, no copies
            torch.addmm(layer.bias, windows[0].reshape(n * batch, -1), layer.weight[0], out=flat)
            for j in range(1, k):
                flat.addmm_(windows[j].reshape(n * batch, -1), layer.weight[j])
        F.leaky_relu_(target, self.negative_slope)
        if target.data_ptr() != dst.data_ptr():
            dst[:n].copy_(target)


def fast_can(weights, dilations, scales, shifts, out_weight, out_bias, wave_scale=2.0**15, *,
             negative_slope: float = 0.2, mode: str = "fp32", block: int = 1024,
             workers: int | None = None) -> CANRuntime:
    """``CANRuntime(...)``: the fast eval-mode CAN from plain tensors (see the module docstring)."""
    return CANRuntime(weights, dilations, scales, shifts, out_weight, out_bias, wave_scale,
                      negative_slope=negative_slope, mode=mode, block=block, workers=workers)


def folded_module(runtime: CANRuntime) -> torch.nn.Module:
    """The folded network as plain ``Conv1d(bias) -> LeakyReLU`` layers and the 1x1 output, in
    fp32, [B, 1, T] (already scaled) -> [B, 1, T]: what ONNX export and other runtimes take. Uses
    the runtime's folded weights (shared scale/shift only)."""
    if runtime.rows is not None:
        raise ValueError("per-row statistics have one network per row; export needs shared ones")
    modules = []
    for layer in runtime.pipelines[0]:
        c_out = layer.weight.shape[-1]
        weight = layer.weight.float().reshape(layer.taps, -1, c_out).permute(2, 1, 0)  # [C_out, C_in, k]
        conv = torch.nn.Conv1d(weight.shape[1], c_out, layer.taps, dilation=layer.dilation, padding=layer.halo)
        with torch.no_grad():
            conv.weight.copy_(weight)
            conv.bias.copy_(layer.bias.float())
        modules += [conv, torch.nn.LeakyReLU(runtime.negative_slope)]
    output = torch.nn.Conv1d(runtime.out_weight.shape[0], 1, 1)
    with torch.no_grad():
        output.weight.copy_(runtime.out_weight.t()[:, :, None])
        output.bias.copy_(runtime.out_bias)
    return torch.nn.Sequential(*modules, output).eval()


class ONNXRuntimeCAN:
    """The folded network exported with ``torch.onnx.export`` and run by ONNX Runtime's CPU
    execution provider (``pip install 'zoo[onnx]'``); ``quantize="int8"``: ONNX Runtime static
    quantization (QDQ, per-channel int8 weights, uint8 activations calibrated on ``calibration``
    [B, T] in [-1, 1]). Same contract as :class:`CANRuntime` (which it is built from, in fp32)."""

    def __init__(self, runtime: CANRuntime, quantize: str | None = None, calibration: torch.Tensor | None = None,
                 threads: int | None = None):
        import io
        import tempfile
        from pathlib import Path

        import onnxruntime as ort

        if runtime.mode != "fp32":
            raise ValueError("export the fp32 runtime; ONNX Runtime chooses its own kernels")
        self.wave_scale = runtime.wave_scale
        module = folded_module(runtime)
        buffer = io.BytesIO()
        example = torch.zeros(1, 1, 4096)
        torch.onnx.export(module, (example,), buffer, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch", 2: "time"}, "y": {0: "batch", 2: "time"}},
                          opset_version=17)
        model = buffer.getvalue()
        if quantize == "int8":
            from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

            if calibration is None:
                raise ValueError("int8 quantization needs calibration speech")
            scaled = (calibration.float().reshape(-1, 1, calibration.shape[-1]) * self.wave_scale).numpy()

            class Reader(CalibrationDataReader):
                def __init__(self):
                    self.items = iter([{"x": row[None]} for row in scaled])

                def get_next(self):
                    return next(self.items, None)

            with tempfile.TemporaryDirectory() as folder:
                source, target = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
                source.write_bytes(model)
                quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
                model = target.read_bytes()
        elif quantize is not None:
            raise ValueError(f"quantize must be None or 'int8', not {quantize!r}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        x = (wave.detach().float().cpu() * self.wave_scale)[:, None, :].numpy()
        y = self.session.run(None, {"x": x})[0]
        return (torch.from_numpy(y)[:, 0] / self.wave_scale).to(wave.device, wave.dtype)


@torch.no_grad()
def forward_with_input_statistics(network, wave: torch.Tensor, mode: str = "fp32", workers: int | None = None,
                                  rows: int = 4096) -> torch.Tensor:
    """``network(wave)`` for ``normalization: "input"`` (the released CAN's inference: every layer
    normalised with the mean and variance of its own output over the whole signal, padding
    positions of the authors' dilation-by-reshape included), computed the fast way.

    Whole-signal statistics rule out the streaming pipeline above (a layer cannot be normalised
    before the previous one has seen the last sample), so this goes layer by layer over the whole
    signal, like the network's own forward, with what made the pipeline fast kept:

    * time-major buffers ``[time, batch, channel]`` with zero halos, so each dilated tap is a
      contiguous row range and a layer is matrix products (fp32: one ``addmm`` per tap, no copies;
      bf16: one product over the concatenated taps with fp32 accumulation in oneDNN);
    * ``workers`` threads (default: ``torch.get_num_threads()``), one intra-op thread each, take
      equal stretches of time of every layer; per layer they meet twice, to add up their partial
      sums (float64) into the statistics and after normalising. No receptive-field overlap is
      recomputed: a stretch reads its neighbour's rows from the shared buffer;
    * the products run ``rows`` rows at a time, so what they read and write stays in cache.

    fp32 equals the network's forward to float rounding; bf16 stores activations in bfloat16
    (within 40 dB SNR of fp32: ``benchmarks/speed.py`` measures it, column "SNR to runtime=torch"). Memory:
    two activation buffers of the whole signal (``2 x T x W`` values) plus the first layer's fp32
    output; ``enhance`` only passes signals up to one chunk (``chunk_seconds``) here."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if wave.dim() != 2:
        raise ValueError(f"expected wave [B, T], got shape {tuple(wave.shape)}")
    device, out_dtype = wave.device, wave.dtype
    wave = wave.detach().to("cpu", torch.float32)
    batch, length = wave.shape
    if length == 0:
        return wave.new_zeros(batch, 0).to(device, out_dtype)
    layers = network.layers()
    store = torch.bfloat16 if mode == "bf16" else torch.float32
    workers = max(1, min(workers or torch.get_num_threads(), length // 1024 or 1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pool = None
    try:
        width = layers[0][0].out_channels
        reach = max(c.dilation[0] * (c.kernel_size[0] - 1) // 2 for c, _, _ in layers)
        halo = reach + 8
        # rows [halo, halo + T) hold the signal; the halos stay zero (the zero padding of every layer)
        size = halo + length + 2 * reach + 8
        source = torch.zeros(size, batch, 1)
        source[halo:halo + length, :, 0] = wave.t() * network.wave_scale
        buffers = [torch.zeros(size, batch, width, dtype=store) for _ in range(2)]
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(workers)
        run = (lambda f, n: list(pool.map(f, range(n)))) if pool else (lambda f, n: [f(i) for i in range(n)])
        for index, (conv, norm, act) in enumerate(layers):
            d, k = conv.dilation[0], conv.kernel_size[0]
            padded = length + (-length) % d  # the authors' reshape: outputs at the padding positions too
            src, dst = (source, buffers[0]) if index == 0 else (buffers[(index + 1) % 2], buffers[index % 2])
            weight = conv.weight.detach().float().permute(2, 1, 0)  # [k, C_in, C_out]
            # layer 0 reads the 16-bit-scaled input (one channel): fp32 in every mode, one
            # broadcast multiply-add per tap; the others are products (bf16: one, over all taps)
            fused = mode == "bf16" and index > 0
            weight = (weight.reshape(k * width, -1).to(torch.bfloat16) if fused else weight).contiguous()
            bounds = [padded * i // workers for i in range(workers + 1)]

            def convolve(i, src=src, dst=dst, d=d, k=k, weight=weight, bounds=bounds, fused=fused, first=index == 0):
                with torch.inference_mode():
                    sums = torch.zeros(batch, width, dtype=torch.float64)
                    squares = torch.zeros(batch, width, dtype=torch.float64)
                    scratch = torch.empty(rows, batch, width) if (first and store != torch.float32) else None
                    for a in range(bounds[i], bounds[i + 1], rows):
                        n = min(rows, bounds[i + 1] - a)
                        r = halo + a
                        taps = [src[r + (j - (k - 1) // 2) * d:][:n] for j in range(k)]
                        out = dst[r:r + n] if scratch is None else scratch[:n]
                        if first:
                            torch.mul(taps[0], weight[0, 0], out=out)
                            for j in range(1, k):
                                out.addcmul_(taps[j], weight[j, 0])
                        elif fused:
                            torch.mm(torch.cat(taps, dim=-1).view(n * batch, -1), weight, out=out.view(n * batch, width))
                        else:
                            flat = out.view(n * batch, width)
                            torch.mm(taps[0].reshape(n * batch, width), weight[0], out=flat)
                            for j in range(1, k):
                                flat.addmm_(taps[j].reshape(n * batch, width), weight[j])
                        block = out.float()
                        # per block in fp32 (a few thousand rows), across blocks in float64
                        sums += block.sum(0)
                        squares += torch.linalg.vecdot(block, block, dim=0)
                        if scratch is not None:
                            dst[r:r + n].copy_(out)  # normalised in fp32 below, from the rounded copy
                    return sums, squares

            partial = run(convolve, workers)
            sums = sum(p[0] for p in partial)
            squares = sum(p[1] for p in partial)
            mean = sums / padded
            var = (squares / padded - mean * mean).clamp_min(0)
            scale, shift = norm.affine_for(mean.float(), var.float())  # [B, W], fp32
            inside = [length * i // workers for i in range(workers + 1)]

            def normalise(i, dst=dst, scale=scale, shift=shift, inside=inside):
                with torch.inference_mode():
                    for a in range(halo + inside[i], halo + inside[i + 1], rows):
                        block = dst[a:min(a + rows, halo + inside[i + 1])]
                        if mode == "bf16":  # in fp32, rounded once when stored
                            block.copy_(F.leaky_relu_(torch.addcmul(shift, block.float(), scale), act.negative_slope))
                        else:
                            F.leaky_relu_(block.mul_(scale).add_(shift), act.negative_slope)

            run(normalise, workers)
            dst[halo + length:halo + padded + reach].zero_()  # padding outputs: zeros for the next layer
        current = (len(layers) - 1) % 2
        last = buffers[current][halo:halo + length].float().view(length * batch, width)
        out_weight = network.output.weight.detach().float().reshape(1, width).t()
        out = torch.addmm(network.output.bias.detach().float(), last, out_weight).view(length, batch)
        return (out.t() / network.wave_scale).to(device, out_dtype)
    finally:
        if pool is not None:
            pool.shutdown()
        torch.set_num_threads(threads)
