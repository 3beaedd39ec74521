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

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        ARCHITECTURES[cls.__name__] = cls

    # ---- what each architecture provides -------------------------------------------------
    def forward(self, wave: torch.Tensor) -> torch.Tensor:  # [B, T] -> [B, T]
        raise NotImplementedError

    def loss(self, enhanced: torch.Tensor, batch: dict) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} defines no training loss")

    # ---- Lightning ------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if not self.trainable:
            raise RuntimeError(f"{type(self).__name__} has no trainable parameters: there is nothing to fit")
        enhanced = self(batch["noisy"])
        loss = self.loss(enhanced, batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["noisy"].shape[0])
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        enhanced = self(batch["noisy"])
        size = batch["noisy"].shape[0]
        self.log("val/loss", self.loss(enhanced, batch), prog_bar=True, batch_size=size, sync_dist=True)
        self.log("val/si_sdr", _si_sdr(enhanced, batch["clean"]).mean(), batch_size=size, sync_dist=True)

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
