"""Audio in and out: reading, writing, resampling and checking what users hand us.

Everything that touches a user's samples before a model sees them lives here, so that the API,
the CLI, the tests and the benchmarks agree on what counts as valid audio and what happens to
int16 arrays, multichannel input, NaNs or clipping.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF


class AudioError(ValueError):
    """Audio that cannot be enhanced as given; the message says what to do about it."""


class AudioFileError(AudioError):
    """A file that is missing, unreadable, truncated or otherwise not usable audio."""


# Integer PCM is scaled by the full-scale value of its type, the convention of soundfile,
# scipy.io.wavfile and every DAW, so that int16 input round-trips to the same values.
_INT_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0, np.dtype(np.int8): 128.0}
_TORCH_INT_SCALE = {torch.int16: 32768.0, torch.int32: 2147483648.0, torch.int8: 128.0}
#: what the dtype error says: exactly the dtypes accepted above, and what to do with unsigned 8-bit PCM
ACCEPTED_DTYPES = ("pass float samples (float16, bfloat16, float32 or float64, full scale = 1.0) or signed "
                   "integer PCM (int8, int16 or int32); unsigned 8-bit PCM (uint8, centred on 128) converts "
                   "as (x.astype('float32') - 128) / 128")
#: sample rates accepted by enhance (Hz): from telephone-band recordings well below 8 kHz up to the
#: highest rate audio interfaces record at; outside it a rate is a mistake (a rate of 1 once took
#: minutes for 1,000 samples)
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 384000
MAX_CHANNELS_FIRST = 64  # a [C, T] array with more "channels" than this is probably [T, C]


def to_float_tensor(wave, *, name: str = "wave") -> tuple[torch.Tensor, dict]:
    """Normalise a user's array to a float32 [C, T] tensor, remembering how to give it back.

    Accepts numpy or torch, 1-D ``[T]`` or channels-first ``[C, T]``, float or integer PCM.
    Returns the tensor and a ``meta`` dict that :func:`from_float_tensor` uses to return the
    same type, dtype, device and shape.
    """
    meta: dict = {}
    if isinstance(wave, torch.Tensor):
        meta.update(kind="torch", dtype=wave.dtype, device=wave.device)
        array = wave.detach()
        if not (array.is_floating_point() or array.dtype in _TORCH_INT_SCALE):
            raise AudioError(f"{name} has dtype {array.dtype}; {ACCEPTED_DTYPES}")
        # float16/bfloat16 are computed in float32 and returned in the input's dtype
        scale = _TORCH_INT_SCALE.get(array.dtype, 1.0)
        tensor = array.to(torch.float32) / scale if scale != 1.0 else array.to(torch.float32)
    elif isinstance(wave, (np.ndarray, list, tuple)):
        array = np.asarray(wave)
        meta.update(kind="numpy", dtype=array.dtype)
        if array.dtype in _INT_SCALE:
            tensor = torch.from_numpy(array.astype(np.float32) / _INT_SCALE[array.dtype])
        elif np.issubdtype(array.dtype, np.floating):
            tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        else:
            raise AudioError(f"{name} has dtype {array.dtype}; {ACCEPTED_DTYPES}")
    else:
        raise AudioError(f"{name} must be a numpy array or torch tensor, not {type(wave).__name__}")

    meta["ndim"] = tensor.ndim
    if tensor.ndim == 1:
        tensor = tensor.unsqueeze(0)
    elif tensor.ndim != 2:
        raise AudioError(
            f"{name} has shape {tuple(tensor.shape)}; pass 1-D [time] or channels-first [channels, time]"
        )
    channels, frames = tensor.shape
    if channels > MAX_CHANNELS_FIRST and frames <= MAX_CHANNELS_FIRST:
        raise AudioError(
            f"{name} has shape {tuple(tensor.shape)}, which looks like [time, channels]; "
            f"zoo expects channels-first [channels, time]: pass wave.T"
        )
    check_samples(tensor, name=name)
    return tensor, meta


def from_float_tensor(tensor: torch.Tensor, meta: dict):
    """Inverse of :func:`to_float_tensor`: same container, dtype, device and shape as the input."""
    if meta["ndim"] == 1:
        tensor = tensor[0]
    dtype = meta["dtype"]
    if meta["kind"] == "torch":
        if not dtype.is_floating_point:
            tensor = _to_int(tensor, _TORCH_INT_SCALE[dtype], dtype=dtype)
        return tensor.to(device=meta["device"], dtype=dtype)
    array = tensor.cpu().numpy()
    if dtype in _INT_SCALE:
        return _to_int(torch.from_numpy(array), _INT_SCALE[dtype], dtype=None).numpy().astype(dtype)
    return array.astype(dtype, copy=False)


def _to_int(tensor: torch.Tensor, scale: float, dtype):
    clipped = clip_to_full_scale(tensor)
    out = torch.round(clipped * scale).clamp(-scale, scale - 1)
    return out.to(dtype) if dtype is not None else out


def clip_to_full_scale(tensor: torch.Tensor) -> torch.Tensor:
    """Clip to [-1, 1] for integer output, warning with the number of samples that were clipped."""
    over = int((tensor.abs() > 1.0).sum())
    if over:
        warnings.warn(
            f"{over} enhanced samples exceeded full scale and were clipped for integer output; "
            "write a float format (e.g. subtype FLOAT) to keep them",
            stacklevel=3,
        )
    return tensor.clamp(-1.0, 1.0)


def check_samples(tensor: torch.Tensor, *, name: str = "wave", offset: int = 0) -> None:
    """Refuse empty or non-finite audio; warn about clipping (it is still processed).

    ``offset``: index of the tensor's first sample in the whole signal, for block-wise reading.
    """
    if tensor.numel() == 0 or tensor.shape[-1] == 0:
        raise AudioError(f"{name} is empty (0 samples): there is nothing to enhance")
    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        bad = (~finite).nonzero()[0].tolist()
        count = int((~finite).sum())
        raise AudioError(
            f"{name} contains {count} NaN or infinite samples{' in this block' if offset else ''} "
            f"(first at channel {bad[0]}, sample {bad[1] + offset}); "
            "repair the audio (e.g. numpy.nan_to_num) before enhancing"
        )
    warn_if_clipped(tensor, name=name)


def warn_if_clipped(tensor: torch.Tensor, *, name: str = "wave", threshold: float = 0.999) -> None:
    """Clipped input is enhanced anyway (that is what users want), but they should know.

    Float samples beyond full scale (1.0) are not clipping but a scale mistake (int16 values in a
    float array, a gain applied twice): that gets its own message."""
    peak = float(tensor.abs().max()) if tensor.numel() else 0.0
    if peak > 1.0 + 1e-6:
        beyond = int((tensor.abs() > 1.0).sum())
        hint = (" (it looks like integer PCM values in a float array: divide by 32768)" if 1000 < peak <= 32768
                else "")
        warnings.warn(
            f"{name} exceeds full scale: peak {peak:.4g} ({20 * math.log10(peak):+.1f} dBFS), {beyond} samples "
            f"beyond +-1.0; float audio is expected within [-1, 1]{hint}. It is enhanced as given; "
            "integer output formats will clip", stacklevel=3,
        )
        return
    at_full_scale = int((tensor.abs() >= threshold).sum())
    if at_full_scale > max(3, 1e-4 * tensor.numel()):
        warnings.warn(
            f"{name} looks clipped: {at_full_scale} samples at full scale; enhancement cannot "
            "restore clipped peaks", stacklevel=3,
        )


def check_sample_rate(sample_rate) -> int:
    """``sample_rate`` as an int of Hz, or an :class:`AudioError` (a ``ValueError``) saying what to
    pass: a positive whole number (``16000.0`` is accepted) within ``MIN_SAMPLE_RATE`` ..
    ``MAX_SAMPLE_RATE``. The one check of the zoo: ``enhance``, the data layer and the measures."""
    if isinstance(sample_rate, float) and sample_rate.is_integer():
        sample_rate = int(sample_rate)
    if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool) or sample_rate <= 0:
        raise AudioError(
            f"sample_rate must be a positive whole number of Hz (e.g. 16000), got {sample_rate!r}"
        )
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"sample_rate {int(sample_rate)} Hz is outside the accepted range {MIN_SAMPLE_RATE:,} to "
            f"{MAX_SAMPLE_RATE:,} Hz; pass the rate the audio was recorded at in Hz (e.g. 16000, 44100, 48000)"
        )
    return int(sample_rate)


def resample(wave, orig_sr: int, new_sr: int):
    """Band-limited sinc resampling along the last axis (``torchaudio.functional.resample`` with
    its defaults); ``wave`` itself when the rates match. Torch in, torch out; a NumPy array in,
    a NumPy array of the same dtype out (the measures and the data layer compute on NumPy)."""
    if orig_sr == new_sr:
        return wave
    if isinstance(wave, torch.Tensor):
        return AF.resample(wave, orig_sr, new_sr)
    return AF.resample(torch.from_numpy(np.ascontiguousarray(wave)), orig_sr, new_sr).numpy()


def resample_context(orig_sr: int, new_sr: int) -> int:
    """Input samples each side that one resampled output sample depends on, with margin.

    Mirrors the kernel width torchaudio's sinc resampler uses (lowpass_filter_width=6,
    rolloff=0.99), so that chunked resampling with this much context equals whole-signal
    resampling.
    """
    if orig_sr == new_sr:
        return 0
    g = math.gcd(orig_sr, new_sr)
    orig, new = orig_sr // g, new_sr // g
    width = math.ceil(6 * orig / (0.99 * min(orig, new)))
    return 2 * (width + orig) + 8


# ---------------------------------------------------------------------------------------------
# Files


def open_audio(path) -> sf.SoundFile:
    """Open an audio file for block reading, with errors that say what is wrong."""
    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise AudioFileError(f"{path} is a folder; pass an audio file (the CLI accepts folders)")
    if path.stat().st_size == 0:
        raise AudioFileError(f"{path} is an empty file (0 bytes): not audio")
    try:
        handle = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioFileError(
            f"{path} could not be read as audio ({error}); zoo reads WAV, FLAC, OGG and the other "
            "formats libsndfile supports: convert it (e.g. with ffmpeg) or check it is not corrupt"
        ) from error
    if handle.frames == 0:
        handle.close()
        raise AudioFileError(f"{path} holds no samples (0 frames): there is nothing to enhance")
    _check_not_truncated(path, handle)
    return handle


def _check_not_truncated(path: Path, handle: sf.SoundFile) -> None:
    """A WAV whose data chunk is shorter than its header claims was cut off while copying.

    libsndfile quietly reads what is there; users would get a shorter output without knowing
    why, so we say so.
    """
    if handle.format not in ("WAV", "WAVEX") or handle.subtype not in _PCM_BYTES:
        return
    with open(path, "rb") as raw:
        header = raw.read(1 << 16)
    at = header.find(b"data")
    if at < 0:
        return
    declared = int.from_bytes(header[at + 4:at + 8], "little")
    present = path.stat().st_size - (at + 8)
    if declared not in (0, 0xFFFFFFFF) and present < declared:
        handle.close()
        raise AudioFileError(
            f"{path} is truncated: its header announces {declared} bytes of audio but only "
            f"{present} are in the file; copy or download it again"
        )


_PCM_BYTES = {"PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "PCM_U8": 1, "FLOAT": 4, "DOUBLE": 8}


def read_audio(path) -> tuple[torch.Tensor, int]:
    """Whole file as float32 [C, T] plus its sample rate (for short files and tests)."""
    with open_audio(path) as handle:
        data = handle.read(dtype="float32", always_2d=True)
        sample_rate = handle.samplerate
    tensor = torch.from_numpy(np.ascontiguousarray(data.T))
    check_samples(tensor, name=str(path))
    return tensor, sample_rate


def iter_blocks(handle: sf.SoundFile, block_frames: int) -> Iterator[torch.Tensor]:
    """Read a file in [C, block] float32 blocks without holding it whole."""
    position = 0
    while True:
        try:
            data = handle.read(block_frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioFileError(
                f"{handle.name} is truncated or corrupt near sample {position} ({error}); "
                "copy or download it again") from error
        if len(data) == 0:
            return
        block = torch.from_numpy(np.ascontiguousarray(data.T))
        check_samples(block, name=str(handle.name), offset=position)
        position += block.shape[-1]
        yield block


def audible_channels(handle: sf.SoundFile, block_frames: int) -> torch.Tensor:
    """[C] bool: which channels of an open file hold a non-zero sample. Reads until every channel
    has one (usually within the first block; the whole file only for digital silence), then
    rewinds. Read errors are left to the pass that enhances (it names the position)."""
    audible = np.zeros(handle.channels, dtype=bool)
    try:
        while not audible.all():
            data = handle.read(block_frames, dtype="float32", always_2d=True)
            if len(data) == 0:
                break
            audible |= (data != 0).any(axis=0)
    except (sf.LibsndfileError, RuntimeError):
        audible[:] = True
    handle.seek(0)
    return torch.from_numpy(audible)


#: how an output records the model that made it (the file's comment tag: WAV LIST/INFO, FLAC/OGG
#: Vorbis comment), so that a rerun with another model does not mistake it for its own
_MADE_BY = "enhanced by zoo model "


def mark_made_by(handle: sf.SoundFile, model: str) -> None:
    """Record ``model`` in a file open for writing (before its samples)."""
    try:
        handle.comment = _MADE_BY + model
    except (sf.LibsndfileError, RuntimeError):  # a container without a comment tag
        pass


def made_by(path) -> str | None:
    """The zoo model recorded in an audio file by :func:`mark_made_by`, or None (not ours, unreadable)."""
    try:
        with sf.SoundFile(str(path)) as handle:
            comment = handle.comment or ""
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError):
        return None
    return comment[len(_MADE_BY):].strip() or None if comment.startswith(_MADE_BY) else None


def write_audio(path, wave: torch.Tensor, sample_rate: int, subtype: str | None = None) -> None:
    """Write float [C, T] audio atomically (temporary name, then rename)."""
    with atomic_output(path) as temporary:
        with sf.SoundFile(temporary, "w", samplerate=sample_rate, channels=wave.shape[0],
                          subtype=subtype, format=format_for(path)) as out:
            write_block(out, wave)


def write_block(handle: sf.SoundFile, wave: torch.Tensor) -> None:
    if handle.subtype not in ("FLOAT", "DOUBLE", "VORBIS", "OPUS"):
        wave = clip_to_full_scale(wave)
    handle.write(wave.detach().cpu().numpy().T)


def format_for(path) -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    formats = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "aiff": "AIFF", "aif": "AIFF"}
    if suffix not in formats:
        raise AudioFileError(
            f"cannot write '{path}': unknown audio extension '.{suffix}'; use .wav, .flac, .ogg or .aiff"
        )
    return formats[suffix]


def output_subtype(input_subtype: str, output_path) -> str | None:
    """Keep the input's sample format when the output container allows it."""
    fmt = format_for(output_path)
    return input_subtype if sf.check_format(fmt, input_subtype) else None


_UMASK = os.umask(0)
os.umask(_UMASK)


#: temporary outputs: ``.NAME.zoo-PID-XXXXXXXX.partial.EXT`` beside the final ``NAME.EXT``; the PID
#: tells a leftover (its process is gone: killed with SIGKILL, a power cut) from a file being written
_PARTIAL = re.compile(r"^\.(?P<stem>.*)\.(?:zoo-(?P<pid>\d+)-)?[A-Za-z0-9_]+\.partial(?P<suffix>\.[^.]*)?$")
#: a temporary file without a PID (written by zoo before 0.x) counts as a leftover after this long
_OLD_PARTIAL_SECONDS = 3600


def is_temporary_output(path) -> bool:
    """True for a temporary output of :func:`atomic_output` (never an input to enhance)."""
    return bool(_PARTIAL.match(Path(path).name))


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(folder, stem: str | None = None) -> list[Path]:
    """Delete leftovers of :func:`atomic_output` in ``folder`` (of outputs named ``stem``, or all)
    whose process no longer runs; return what was removed. A file still being written by a live
    process is left alone."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for path in entries:
        match = _PARTIAL.match(path.name)
        if not match or (stem is not None and match["stem"] != stem) or not path.is_file():
            continue
        pid = match["pid"]
        try:
            stale = (not _process_alive(int(pid))) if pid else (
                time.time() - path.stat().st_mtime > _OLD_PARTIAL_SECONDS)
            if stale:
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    return removed


@contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A crash, Ctrl-C, SIGTERM (where the program turns it into an exception, as ``zoo`` does) or
    error never leaves a half-written file under the real name, nor the temporary file; a
    temporary left by a killed process is removed the next time this output is written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.stem)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.stem}.zoo-{os.getpid()}-", suffix=f".partial{path.suffix}",
                                     dir=path.parent)
    os.close(fd)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
