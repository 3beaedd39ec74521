"""The contract every zoo model follows: ``DenoiserModule``.

A model is a LightningModule that maps ``wave[B, T] -> wave[B, T]`` at its own ``sample_rate``,
owns its front-end and its loss, and keeps every hyper-parameter in ``__init__`` arguments
(``save_hyperparameters``) so that a ``config.json`` alone rebuilds it. What users call,
``enhance`` and ``enhance_file``, is inherited and never overridden: it is the one waveform path
shared by the Python API, the CLI, the tests and the benchmarks (see ``zoo.inference``).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import ClassVar

import lightning as L
import soundfile as sf
import torch
from tqdm.auto import tqdm

from . import audio
from .inference import (OverlapStream, WholeSignalStream, WholeSignalTooLongError, enhance_stream, exact_length,
                        resampler_stream, run_stream, split_blocks)

#: every DenoiserModule subclass by class name: what a config.json's "architecture" may name.
ARCHITECTURES: dict[str, type["DenoiserModule"]] = {}


class SupervisedModelError(TypeError):
    """A model without ``semi_supervised = True`` was given rows without clean speech."""


class BatchKeysError(KeyError):
    """The data does not provide a batch key the model needs."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class BatchContract(L.Callback):
    """What every fit of a :class:`DenoiserModule` checks, on the model's side of the one-way flow:

    - at fit start, the keys the data module declares (``batch_keys``) against the model's
      ``batch_keys``, before any batch is read;
    - on the first training batch of the fit, the batch against ``zoo.data.batch.BATCH_SCHEMA`` and
      the model's keys (for data without a declaration), and that a supervised model is not fed
      rows without clean speech.
    """

    def __init__(self):
        self.checked = False

    def on_fit_start(self, trainer, pl_module) -> None:
        from .data.batch import missing_keys_message

        self.checked = False
        data = trainer.datamodule
        provided = getattr(data, "batch_keys", None)
        if provided is not None:
            message = missing_keys_message(type(pl_module).__name__, pl_module.batch_keys, type(data).__name__,
                                           tuple(provided))
            if message:
                raise BatchKeysError(message)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.checked:
            return
        from .data.batch import check_batch, missing_keys_message

        data = type(trainer.datamodule).__name__ if trainer.datamodule is not None else "the training data loader"
        check_batch(batch, f"the first training batch of {data}")
        message = missing_keys_message(type(pl_module).__name__, pl_module.batch_keys, data, tuple(batch))
        if message:
            raise BatchKeysError(message)
        if "has_clean" in batch and not bool(batch["has_clean"].all()) and not pl_module.semi_supervised:
            raise SupervisedModelError(
                f"{type(pl_module).__name__} is being trained on rows without clean speech (has_clean=False: 'clean' "
                "is a zero placeholder), and a supervised loss would learn to output silence. Train a semi-supervised "
                "model (class attribute semi_supervised = True, whose loss reads 'has_clean' / 'noise_only'), or give "
                "data with clean speech for every row.")
        self.checked = True


class DenoiserModule(L.LightningModule):
    """Base class of every denoiser in the zoo.

    Subclasses set ``sample_rate`` (Hz), ``input_channels`` when they take several channels at once,
    and declare one streaming mode (:attr:`streaming`, what makes chunked inference exact):
    ``context_samples`` (how many input samples each side an output sample depends on: the
    receptive field) with ``hop_samples`` (a frame model's hop); or an overridden :meth:`stream`
    when the model carries recursive state from frame to frame; or ``whole_signal_max_seconds``
    when its context is unbounded (it then runs once on the whole input, up to that length).
    """

    sample_rate: int = 16000
    #: streaming mode "overlap": input samples each side an output sample depends on
    context_samples: int | None = None
    #: with ``context_samples``: the model's frames start at multiples of this many samples from the
    #: signal's start (an STFT's hop; 1 for a convolutional network), so chunk windows must too
    hop_samples: int = 1
    #: streaming mode "whole" (unbounded context: a BiLSTM, an iterative solver): the longest input,
    #: in seconds, the model accepts; it is held whole in memory at ``sample_rate``
    whole_signal_max_seconds: float | None = None
    #: channels ``forward`` takes at once: 1 (each channel of an input is enhanced on its own), or
    #: K > 1 (``forward`` maps [B, K, T] to mono [B, T]; ``enhance`` takes exactly K channels)
    input_channels: int = 1
    #: True for models with nothing to learn (classical filters): fit refuses them clearly.
    trainable: ClassVar[bool] = True
    #: the batch keys (zoo.data.batch.BATCH_SCHEMA) the model's step and loss read; checked against
    #: the data module's when a fit starts
    batch_keys: ClassVar[tuple[str, ...]] = ("noisy", "clean")
    #: True for models that learn from rows without clean speech (``has_clean`` False: noise-only
    #: clips, noisy recordings), reading ``has_clean`` / ``noise_only`` in their loss. Any other model
    #: refuses such rows (:class:`SupervisedModelError`): a supervised loss would learn silence.
    semi_supervised: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        ARCHITECTURES[cls.__name__] = cls

    # ---- what each architecture provides -------------------------------------------------
    def forward(self, wave: torch.Tensor, **conditions) -> torch.Tensor:
        """Inference: ``wave`` [B, T] (or [B, C, T] for ``input_channels`` > 1) -> [B, T] at
        ``sample_rate``. ``conditions`` (a noise level, a prior ...) are extra inputs a model may
        take; a model estimates each one itself when it is absent, so that ``enhance`` (which
        passes none) always works."""
        raise NotImplementedError

    def step(self, batch: dict) -> dict:
        """One forward pass on a batch for training and validation: a dict with at least
        ``"enhanced"`` [B, T]; models add what their loss needs (latents, masks, estimates). The
        default runs ``forward`` on ``batch["noisy"]`` with the batch's ``"conditions"``."""
        return {"enhanced": self(batch["noisy"], **batch.get("conditions", {}))}

    def loss(self, outputs: dict, batch: dict) -> "torch.Tensor | dict[str, torch.Tensor]":
        """The training loss of :meth:`step`'s ``outputs`` on ``batch``: a scalar, or a dict of named
        terms that are summed (weight them here) and logged one by one as ``train/loss/NAME``."""
        raise NotImplementedError(f"{type(self).__name__} defines no training loss")

    # ---- Lightning ------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if not self.trainable:
            raise RuntimeError(f"{type(self).__name__} has no trainable parameters: there is nothing to fit")
        total = self._log_loss("train", self.loss(self.step(batch), batch), batch)
        return total

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        outputs = self.step(batch)
        self._log_loss("val", self.loss(outputs, batch), batch)
        truth = batch["has_clean"] if "has_clean" in batch else torch.ones(batch["noisy"].shape[0], dtype=torch.bool)
        if bool(truth.any()):  # SI-SDR against real clean speech only, never against a placeholder
            score = _si_sdr(outputs["enhanced"][truth], batch["clean"][truth]).mean()
            self.log("val/si_sdr", score, batch_size=int(truth.sum()), sync_dist=True)

    def _log_loss(self, split: str, loss, batch: dict) -> torch.Tensor:
        """Log a loss (a tensor, or a dict of named terms) and return the total."""
        size = batch["noisy"].shape[0]
        sync = split != "train"
        if isinstance(loss, dict):
            if not loss:
                raise ValueError(f"{type(self).__name__}.loss returned an empty dict: give at least one named term")
            for name, term in loss.items():
                self.log(f"{split}/loss/{name}", term, batch_size=size, sync_dist=sync)
            loss = sum(loss.values())
        self.log(f"{split}/loss", loss, prog_bar=True, batch_size=size, sync_dist=sync)
        return loss

    def configure_callbacks(self):
        """Every fit checks the batches against what the model needs (:class:`BatchContract`)."""
        return [BatchContract()]

    # ---- inference ------------------------------------------------------------------------
    @property
    def streaming(self) -> str:
        """The streaming mode the model declares: how ``enhance`` in blocks gives the whole-signal
        output (``zoo.inference``), read by the cards, the tests and the docs.

        - ``"whole"``: ``whole_signal_max_seconds`` is set (unbounded context): the input is held
          whole at the model's rate, up to that many seconds, and ``forward`` runs once at the end;
        - ``"overlap"``: ``context_samples`` is set: each block is processed with that much context
          each side, in windows that start on multiples of ``hop_samples``;
        - ``"recursive"``: the model overrides :meth:`stream` with a stream that carries its state.

        ``whole_signal_max_seconds`` decides over ``context_samples`` (a masking model with an STFT
        hop and context may still have a recurrent estimator that sees the whole signal).
        """
        if self.whole_signal_max_seconds is not None:
            return "whole"
        if self.context_samples is not None:
            return "overlap"
        if type(self).stream is not DenoiserModule.stream:
            return "recursive"
        raise NotImplementedError(
            f"{type(self).__name__} declares no streaming mode: set context_samples (and hop_samples) for a finite "
            "context, override stream() for recursive state, or set whole_signal_max_seconds for unbounded context")

    def streaming_summary(self) -> str:
        """One line for a model card: the channels the model takes and how it streams."""
        k = self.input_channels
        channels = ("1 input channel (each channel of a multichannel input is enhanced on its own)" if k == 1
                    else f"{k} input channels at once, one (mono) output")
        mode = self.streaming
        if mode == "overlap":
            how = (f"overlap ({self.context_samples} samples of context each side at {self.sample_rate} Hz"
                   + (f", windows on its {self.hop_samples}-sample hop" if self.hop_samples > 1 else "")
                   + (", with the whole input's statistics measured first" if self.needs_input_statistics else "")
                   + "): chunked output equals whole-file output")
        elif mode == "recursive":
            how = "recursive (its state is carried from block to block): chunked output equals whole-file output"
        else:
            how = (f"whole signal (unbounded context: the input is held whole and enhanced at once, up to "
                   f"{self.whole_signal_max_seconds:g} s)")
        return f"{channels}; streaming: {how}"

    def _check_streaming_declaration(self) -> None:
        name = type(self).__name__
        k = self.input_channels
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"{name}.input_channels must be a whole number >= 1, got {k!r}")
        mode = self.streaming
        if mode == "whole":
            bound = self.whole_signal_max_seconds
            if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not bound > 0:
                raise ValueError(f"{name}.whole_signal_max_seconds must be a positive number of seconds "
                                 f"(the longest input it holds in memory), got {bound!r}")
        elif mode == "overlap":
            context, hop = self.context_samples, self.hop_samples
            if isinstance(context, bool) or not isinstance(context, int) or context < 0:
                raise ValueError(f"{name}.context_samples must be a whole number of samples >= 0, got {context!r}")
            if isinstance(hop, bool) or not isinstance(hop, int) or hop < 1:
                raise ValueError(f"{name}.hop_samples must be a whole number of samples >= 1, got {hop!r}")

    def _whole_signal_message(self, samples: int, rate: int) -> str:
        bound = self.whole_signal_max_seconds
        return (f"{self.zoo_identity} enhances the whole input at once (streaming mode 'whole': its context is "
                f"unbounded, so it holds the input in memory) and accepts at most {bound:g} s "
                f"(whole_signal_max_seconds); this input is {samples / rate:.1f} s long ({samples} samples at "
                f"{rate} Hz). Split it into parts of at most {bound:g} s and enhance each (e.g. `ffmpeg -i in.wav "
                f"-f segment -segment_time {bound:g} part%03d.wav`), or use a model that streams (its streaming "
                "mode is 'overlap' or 'recursive')")

    def _check_length(self, frames: int, rate: int) -> None:
        """Refuse, before anything is read or computed, an input longer than a whole-signal model's bound."""
        if self.streaming == "whole" and frames > self.whole_signal_max_seconds * rate:
            raise WholeSignalTooLongError(self._whole_signal_message(frames, rate))

    def _joint_channels(self, channels: int, what: str) -> bool:
        """True when the input's channels go into the model together (``input_channels`` = K > 1:
        streams carry [1, K, n] blocks, the output is mono); False when each channel is enhanced on
        its own. Refuses a channel count a K-channel model cannot take."""
        k = self.input_channels
        if k == 1:
            return False
        if channels != k:
            raise audio.AudioError(
                f"{self.zoo_identity} takes {k} channels at once (input_channels={k}) and returns one, but {what} "
                f"has {channels} channel{'s' if channels != 1 else ''}: pass the {k} channels it was made for, "
                f"channels first ([{k}, time]), or a {k}-channel file")
        return True

    @property
    def needs_input_statistics(self) -> bool:
        """True when the output depends on statistics of the whole input (the released CAN
        normalises every layer with the input's own mean and variance). ``enhance`` and
        ``enhance_file`` then measure them first, in passes over the input that hold a block at a
        time (:meth:`measure_input_statistics`), and stream with them; an input no longer than
        one block is processed in one piece instead."""
        return False

    def measure_input_statistics(self, blocks):
        """Statistics of a whole input for :meth:`stream`; ``blocks()`` returns a fresh iterator
        of [C, n] blocks of it at the model's rate (as many passes as the model needs)."""
        raise NotImplementedError(f"{type(self).__name__} does not use input statistics")

    def stream(self, statistics=None):
        """A stream equal to ``forward`` on the whole signal (see ``zoo.inference``), built from the
        streaming mode the model declares (:attr:`streaming`); recursive models override it."""
        self._check_streaming_declaration()
        mode = self.streaming
        if mode == "whole":
            limit = math.ceil(self.whole_signal_max_seconds * self.sample_rate)
            return WholeSignalStream(self._forward_eval, limit,
                                     lambda held: self._whole_signal_message(held, self.sample_rate))
        if mode == "overlap":
            return OverlapStream(self._forward_eval, self.context_samples, hop=self.hop_samples)
        raise NotImplementedError(f"{type(self).__name__} is recursive but calls DenoiserModule.stream(): its own "
                                  "stream() must carry its state")

    def _forward_eval(self, wave: torch.Tensor, *args) -> torch.Tensor:
        with torch.inference_mode():
            return self(wave.to(self.device, torch.float32), *args).float().cpu()

    def _statistics_for(self, blocks, rate: int, length: int, block: int, progress: bool):
        """The whole input's statistics when the model needs them and the input spans several blocks."""
        if not self.needs_input_statistics or length <= block:
            return None

        def at_model_rate():
            return run_stream(resampler_stream(rate, self.sample_rate), blocks())

        if progress:
            print(f"measuring the input's statistics ({type(self).__name__} normalises with them): "
                  "one pass per layer", flush=True)
        return self.measure_input_statistics(at_model_rate)

    @property
    def zoo_identity(self) -> str:
        """The name recorded in the files this model writes (``enhance_file``): the name it was
        loaded by when the caller set ``zoo_model_name`` (the CLI does), else its card folder's name,
        else its class name."""
        name = getattr(self, "zoo_model_name", None)
        folder = getattr(self, "zoo_folder", None)
        return str(name or (Path(folder).name if folder else type(self).__name__))

    def enhance(self, wave, sample_rate: int, *, chunk_seconds: float = 30.0, progress: bool = False):
        """Enhance a numpy array or torch tensor, ``[T]`` or channels-first ``[C, T]``, at any rate.

        The input is resampled to the model's rate and back, each channel is enhanced on its
        own, and the result has the input's shape, container and dtype (int16 in, int16 out;
        float16 and bfloat16 are computed in float32 and returned in their own dtype). A model that
        takes K channels at once (``input_channels`` = K > 1) takes exactly ``[K, T]`` and returns
        mono ``[T]``. Long inputs are processed in chunks of ``chunk_seconds`` (at least 0.01 s)
        exactly as in one piece (:attr:`streaming`). A channel of digital silence (all zeros) comes
        back as exact zeros.
        """
        sample_rate = audio.check_sample_rate(sample_rate)
        block = block_frames(chunk_seconds, sample_rate)
        tensor, meta = audio.to_float_tensor(wave)
        joint = self._joint_channels(tensor.shape[0], f"the input (shape {list(tensor.shape[-meta['ndim']:])})")
        self._check_length(tensor.shape[-1], sample_rate)
        audible = (tensor != 0).any(dim=-1)
        if joint:  # one [1, K, T] input, one mono output
            tensor, audible, meta = tensor.unsqueeze(0), audible.any().reshape(1), {**meta, "ndim": 1}
        if not bool(audible.any()):  # digital silence: nothing to enhance, and no model bias added to it
            return audio.from_float_tensor(torch.zeros(audible.shape[0], tensor.shape[-1]), meta)
        statistics = self._statistics_for(lambda: split_blocks(tensor, block), sample_rate, tensor.shape[-1], block,
                                          progress)
        blocks = split_blocks(tensor, block)
        if progress:
            blocks = tqdm(blocks, total=-(-tensor.shape[-1] // block), unit="chunk", desc="enhance")
        pieces = exact_length(run_stream(enhance_stream(self, sample_rate, statistics), blocks), tensor.shape[-1])
        out = torch.cat(list(silence_channels(pieces, audible)), dim=-1)
        return audio.from_float_tensor(out, meta)

    def enhance_file(self, src, dst, *, chunk_seconds: float = 30.0, progress: bool = False,
                     overwrite: bool = False) -> Path:
        """Enhance an audio file into ``dst`` (same rate, channels and sample format; mono from a
        model that takes K channels at once, which refuses a file that has not K channels).

        Reads and writes in blocks, so memory does not grow with the file's length; writes to a
        temporary name and renames it at the end; refuses to overwrite ``src``, and refuses an
        existing ``dst`` (``FileExistsError``) unless ``overwrite=True``, as ``zoo denoise`` does.
        The output records which model made it (``made_by(dst)``). Silent channels stay exact zeros.
        """
        src, dst = Path(src), Path(dst)
        if src.resolve() == dst.resolve() or (dst.exists() and src.exists() and os.path.samefile(src, dst)):
            raise audio.AudioFileError(f"refusing to overwrite the input {src}: choose another output path")
        audio.format_for(dst)  # an unsupported extension is refused before anything is read or written
        if (dst.exists() or dst.is_symlink()) and not overwrite:
            made = audio.made_by(dst) if dst.is_file() else None
            raise FileExistsError(
                f"{dst} already exists{f' (made by {made})' if made else ''}; pass overwrite=True to replace it "
                "or choose another output path")
        with audio.open_audio(src) as reader:
            rate, channels = reader.samplerate, reader.channels
            audio.check_sample_rate(rate)
            joint = self._joint_channels(channels, str(src))
            self._check_length(reader.frames, rate)
            subtype = audio.output_subtype(reader.subtype, dst)
            block = block_frames(chunk_seconds, rate)
            audible = audio.audible_channels(reader, block)
            if joint:  # [1, K, n] blocks in, mono out
                audible, channels = audible.any().reshape(1), 1

            def rows(blocks):
                return (b.unsqueeze(0) for b in blocks) if joint else blocks

            def reread():
                with audio.open_audio(src) as again:
                    yield from rows(audio.iter_blocks(again, block))

            statistics = self._statistics_for(reread, rate, reader.frames, block, progress)
            blocks = rows(audio.iter_blocks(reader, block))
            if progress:
                blocks = tqdm(blocks, total=-(-reader.frames // block), unit="chunk", desc=src.name, leave=False)
            with audio.atomic_output(dst) as temporary:
                with sf.SoundFile(temporary, "w", samplerate=rate, channels=channels, subtype=subtype,
                                  format=audio.format_for(dst)) as writer:
                    audio.mark_made_by(writer, self.zoo_identity)
                    if bool(audible.any()):
                        pieces = run_stream(enhance_stream(self, rate, statistics), blocks)
                    else:  # digital silence: written as exact zeros without running the model
                        pieces = (torch.zeros(channels, min(block, reader.frames - start))
                                  for start in range(0, reader.frames, block))
                    for piece in silence_channels(exact_length(pieces, reader.frames), audible):
                        audio.write_block(writer, piece)
        return dst

    # ---- serialisation --------------------------------------------------------------------
    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, strict=True, **kwargs):
        """The model of a ``zoo fit`` checkpoint, rebuilt from its saved hyper-parameters and weights.
        Checkpoints are safetensors + JSON (``zoo.checkpoint_io``): nothing is unpickled, unlike
        Lightning's own ``load_from_checkpoint``, which this replaces. ``kwargs`` change init arguments."""
        import inspect

        from .checkpoint_io import load_checkpoint

        if hparams_file is not None:
            raise ValueError("hparams_file is not used: a zoo checkpoint holds its hyper-parameters")
        checkpoint = load_checkpoint(checkpoint_path, map_location=map_location)
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        saved = {k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if k in accepted}
        model = cls(**{**saved, **kwargs})
        model.load_state_dict(checkpoint["state_dict"], strict=strict)
        return model

    def save_pretrained(self, folder, **card) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (+ a model card) into ``folder``."""
        from .model_folder import save_pretrained

        return save_pretrained(self, folder, **card)


#: the shortest block ``chunk_seconds`` may ask for: 0 or a negative value once meant 1-sample blocks
#: (a 4-second file estimated at half an hour)
MIN_CHUNK_SECONDS = 0.01


def block_frames(chunk_seconds, sample_rate: int) -> int:
    """Samples per block for ``chunk_seconds`` at ``sample_rate``; refuses 0, negative, NaN or tiny values."""
    try:
        seconds = float(chunk_seconds)
    except (TypeError, ValueError):
        seconds = float("nan")
    if isinstance(chunk_seconds, bool) or not math.isfinite(seconds) or seconds < MIN_CHUNK_SECONDS:
        raise audio.AudioError(
            f"chunk_seconds must be a number of seconds of at least {MIN_CHUNK_SECONDS} (the block length for "
            f"long inputs; default 30), got {chunk_seconds!r}")
    return max(1, int(seconds * sample_rate))


def silence_channels(pieces, audible: torch.Tensor):
    """Zero the channels that were digital silence on input (``audible[c]`` False): a model's biases
    must not turn silence into noise."""
    for piece in pieces:
        if not bool(audible.all()):
            piece = piece * audible.to(piece.dtype)[:, None]
        yield piece


def _si_sdr(estimate: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR per batch row, in dB (a quick validation signal while training)."""
    from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

    return scale_invariant_signal_distortion_ratio(estimate.float(), target.float(), zero_mean=True)
