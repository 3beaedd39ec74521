"""Exact chunked inference in bounded memory.

Whole-file processing is the reference: a 30-minute file must give the same samples as if the
model, and the resamplers around it, had seen it in one piece, without holding more than a few
seconds of intermediate activations. Every stage of the waveform path is a *stream*: samples go
in with :meth:`Stream.push` in blocks of any size, outputs come back as soon as they are final,
and :meth:`Stream.flush` returns the rest at the end of the input.

A model declares one of three streaming modes (``DenoiserModule.streaming``):

- ``"overlap"``: :class:`OverlapStream` wraps any operator whose output depends on a finite window
  of input (``context`` samples each side): a convolutional network with a known receptive
  field, a frame-based (STFT) model, or a sinc resampler. Each block is processed with enough
  context on both sides, and only outputs whose whole window lies inside the block are emitted.
  Windows start on multiples of the operator's ``hop`` (a frame model's frames start at multiples
  of its hop from the signal start: a window starting elsewhere would frame the signal
  differently) and, for a resampler, of its ``down`` factor, so the result equals whole-signal
  processing to floating-point rounding.
- ``"recursive"``: models with recursive state (the Wiener filter's decision-directed SNR)
  implement their own stream that carries that state from block to block.
- ``"whole"``: models with unbounded context (a bidirectional LSTM, an iterative solver) cannot
  be chunked exactly; :class:`WholeSignalStream` holds the whole input at the model's rate and
  runs the model once at the end, up to the bound the model states (``max_samples``; longer
  inputs are refused with :class:`WholeSignalTooLongError`).

Blocks are ``[B, n]``, or ``[B, K, n]`` for a model that takes ``K`` channels at once (the
resamplers work on the last axis, channel by channel); outputs are ``[B, m]``.

:func:`enhance_stream` chains resample -> model -> resample; ``DenoiserModule.enhance`` and
``enhance_file`` are thin wrappers around it, and so are the CLI and the benchmarks.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator, Protocol

import torch

from .audio import AudioError, resample, resample_context


class WholeSignalTooLongError(AudioError):
    """An input longer than a whole-signal model's stated memory bound."""


class Stream(Protocol):
    def push(self, block: torch.Tensor) -> torch.Tensor:
        """Feed [B, n] (or [B, K, n]) new input samples; return the [B, m] outputs that became final."""

    def flush(self) -> torch.Tensor:
        """Signal the end of the input; return the remaining outputs."""


class OverlapStream:
    """Streams a finite-context operator exactly.

    ``fn`` maps a [B, L] (or [B, K, L]) window to [B, ceil(L * up / down)] outputs; output ``j``
    depends only on inputs within ``context`` samples of position ``j * down / up``, and the
    operator treats the signal beyond a window's edges as it treats the signal beyond the file's
    edges in whole-signal processing (only outputs far enough from a window's inner edges are
    kept). Windows always start on a multiple of ``hop`` and of ``down``: the output grid of every
    window then coincides with the whole-signal grid (rational-rate resampling), and so do the
    frames of a frame-based model (an STFT with hop ``hop`` frames a window exactly as it frames
    the whole signal).
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], context: int, up: int = 1, down: int = 1,
                 hop: int = 1):
        if int(context) < 0 or int(hop) < 1:
            raise ValueError(f"OverlapStream needs context >= 0 and hop >= 1 samples, got context={context}, hop={hop}")
        g = math.gcd(up, down)
        self.fn, self.context, self.up, self.down = fn, int(context), up // g, down // g
        self.hop = int(hop)
        self.align = math.lcm(self.down, self.hop)  # where a window may start
        self.buffer: torch.Tensor | None = None
        self.start = 0  # global input index of buffer[..., 0]; a multiple of `align`
        self.n_in = 0
        self.n_out = 0

    def push(self, block: torch.Tensor) -> torch.Tensor:
        self.buffer = block if self.buffer is None else torch.cat([self.buffer, block], dim=-1)
        self.n_in += block.shape[-1]
        # Output j is final once inputs up to j*down/up + context have arrived.
        last_input = self.n_in - 1 - self.context
        ready = (last_input * self.up) // self.down + 1 if last_input >= 0 else 0
        if ready <= self.n_out:
            return _empty(block)
        return self._emit(ready)

    def flush(self) -> torch.Tensor:
        if self.buffer is None:
            return torch.zeros(1, 0)
        total = -(-self.n_in * self.up // self.down)  # ceil: the whole-signal output length
        return self._emit(total)

    def _emit(self, end: int) -> torch.Tensor:
        out = self.fn(self.buffer)
        first_out = self.start * self.up // self.down
        emitted = out[..., self.n_out - first_out:end - first_out]
        self.n_out = end
        # Keep only the input that outputs from n_out onwards still depend on.
        keep_from = max((self.n_out * self.down) // self.up - self.context, 0)
        keep_from = (keep_from // self.align) * self.align
        if keep_from > self.start:
            self.buffer = self.buffer[..., keep_from - self.start:]
            self.start = keep_from
        return emitted


def resampler_stream(orig_sr: int, new_sr: int) -> Stream:
    if orig_sr == new_sr:
        return _Identity()
    return OverlapStream(lambda x: resample(x, orig_sr, new_sr), resample_context(orig_sr, new_sr),
                         up=new_sr, down=orig_sr)


class _Identity:
    def push(self, block):
        return block

    def flush(self):
        return torch.zeros(1, 0)


class Chain:
    """Stages in series: each stage's outputs are the next stage's inputs."""

    def __init__(self, *stages: Stream):
        self.stages = stages

    def push(self, block: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            if not block.shape[-1]:  # nothing became final: the later stages have nothing new
                return block
            block = stage.push(block)
        return block

    def flush(self) -> torch.Tensor:
        tail = None
        for stage in self.stages:
            pieces = []
            if tail is not None and tail.shape[-1]:
                pieces.append(stage.push(tail))
            pieces.append(stage.flush())
            tail = _cat(pieces)
        return tail


def _empty(block: torch.Tensor) -> torch.Tensor:
    """No output yet (consumers look only at the last axis's length)."""
    return block[..., :0]


def _cat(pieces: list[torch.Tensor]) -> torch.Tensor:
    pieces = [p for p in pieces if p.shape[-1]]
    if not pieces:
        return torch.zeros(1, 0)
    return torch.cat(pieces, dim=-1)


class WholeSignalStream:
    """Holds the whole input and runs ``fn`` on it at the end: for models whose every output depends
    on the whole input (streaming mode ``"whole"``: a bidirectional recurrent network, an iterative
    solver; or statistics of an input that is one block long).

    ``max_samples``: the most input samples it holds (the model's stated memory bound, at its
    rate); one more raises :class:`WholeSignalTooLongError` with ``describe(samples)`` as the message.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], max_samples: int | None = None,
                 describe: Callable[[int], str] | None = None):
        self.fn, self.pieces, self.held = fn, [], 0
        self.max_samples, self.describe = max_samples, describe

    def push(self, block: torch.Tensor) -> torch.Tensor:
        self.held += block.shape[-1]
        if self.max_samples is not None and self.held > self.max_samples:
            self.pieces = []
            message = (self.describe(self.held) if self.describe else
                       f"the input is longer than the {self.max_samples} samples this whole-signal stream may hold")
            raise WholeSignalTooLongError(message)
        self.pieces.append(block)
        return _empty(block)

    def flush(self) -> torch.Tensor:
        if not self.pieces:
            return torch.zeros(1, 0)
        wave, self.pieces, self.held = torch.cat(self.pieces, dim=-1), [], 0
        return self.fn(wave)


def enhance_stream(model, sample_rate: int, statistics=None) -> Chain:
    """The one waveform path: input rate -> model rate -> model -> input rate. ``statistics``: the
    whole input's, for models that normalise with them (``DenoiserModule.needs_input_statistics``)."""
    return Chain(
        resampler_stream(sample_rate, model.sample_rate),
        model.stream() if statistics is None else model.stream(statistics),
        resampler_stream(model.sample_rate, sample_rate),
    )


def run_stream(stream: Stream, blocks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Push blocks through a stream, yielding non-empty outputs, then the flushed tail."""
    for block in blocks:
        out = stream.push(block)
        if out.shape[-1]:
            yield out
    tail = stream.flush()
    if tail.shape[-1]:
        yield tail


def exact_length(pieces: Iterable[torch.Tensor], length: int) -> Iterator[torch.Tensor]:
    """Trim or zero-pad a stream of pieces to ``length`` samples.

    Resampling to the model's rate and back rounds lengths up at each step (ceil), so a round
    trip may give a sample or two more than went in; users get exactly their input length.
    """
    produced, rows = 0, 1
    for piece in pieces:
        rows = piece.shape[0]
        piece = piece[..., : max(0, length - produced)]
        produced += piece.shape[-1]
        if piece.shape[-1]:
            yield piece
    if produced < length:
        yield torch.zeros(rows, length - produced)


def split_blocks(wave: torch.Tensor, block: int) -> Iterator[torch.Tensor]:
    for start in range(0, wave.shape[-1], block):
        yield wave[..., start:start + block]
