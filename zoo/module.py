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
from .inference import OverlapStream, enhance_stream, exact_length, resampler_stream, run_stream, split_blocks

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

    Subclasses set ``sample_rate`` (Hz) and either ``context_samples`` (how many input samples
    each side an output sample depends on: the receptive field, for exact chunking) or override
    :meth:`stream` when the model carries recursive state from frame to frame.
    """

    sample_rate: int = 16000
    context_samples: int | None = None
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
        """A stream equal to ``forward`` on the whole signal (see ``zoo.inference``)."""
        if self.context_samples is None:
            raise NotImplementedError(
                f"{type(self).__name__} must set context_samples or override stream()")
        return OverlapStream(self._forward_eval, self.context_samples)

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
        float16 and bfloat16 are computed in float32 and returned in their own dtype). Long inputs
        are processed in chunks of ``chunk_seconds`` (at least 0.01 s) with exact context. A channel
        of digital silence (all zeros) comes back as exact zeros.
        """
        sample_rate = audio.check_sample_rate(sample_rate)
        block = block_frames(chunk_seconds, sample_rate)
        tensor, meta = audio.to_float_tensor(wave)
        audible = (tensor != 0).any(dim=-1)
        if not bool(audible.any()):  # digital silence: nothing to enhance, and no model bias added to it
            return audio.from_float_tensor(torch.zeros_like(tensor), meta)
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
        """Enhance an audio file into ``dst`` (same rate, channels and sample format).

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
            subtype = audio.output_subtype(reader.subtype, dst)
            block = block_frames(chunk_seconds, rate)
            audible = audio.audible_channels(reader, block)

            def reread():
                with audio.open_audio(src) as again:
                    yield from audio.iter_blocks(again, block)

            statistics = self._statistics_for(reread, rate, reader.frames, block, progress)
            blocks = audio.iter_blocks(reader, block)
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
    def save_pretrained(self, folder, **card) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (+ a model card) into ``folder``."""
        from .hub import save_pretrained

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
