"""Training checkpoints without pickles: every tensor in safetensors, everything else as JSON.

Lightning's default ``TorchCheckpointIO`` writes ``torch.save`` pickles, and resuming a run
unpickles them: a checkpoint from someone else could run code, and a kept run (``training/NAME``)
is a file nobody can read without PyTorch's unpickler (DESIGN.md: nothing unpickles when a
model loads or a run resumes). :class:`SafetensorsCheckpointIO` writes the
whole checkpoint dict (weights, Adam's moments, the loops' position in the data, callback states,
hyper-parameters, ``zoo.train.StartFrom``'s lineage) as one safetensors file:

- every tensor, under its key path (``state_dict/network.body.0.weight``,
  ``optimizer_states/0/state/3/exp_avg``), with its dtype and shape;
- the nested structure around them as JSON, in the safetensors header's ``__metadata__`` under
  ``zoo_checkpoint``: dicts, lists, tuples, ints, floats (``nan``/``inf`` too), strings, bools
  and None, tensors as ``{"__tensor__": NAME}``.

Why the header and not a JSON file beside the checkpoint: a checkpoint stays one file, so what
Lightning does with one (``ModelCheckpoint`` keeps top-k, removes, links ``last.ckpt``;
``--ckpt_path last`` finds it; ``--keep-state`` copies it) keeps working, a copy can never pair
weights with another run's loop state, and the write stays atomic (temporary name, then
rename). Any safetensors reader shows both: ``safetensors.safe_open(path, "pt").metadata()``
holds the JSON, its ``keys()`` the tensors. (Safetensors caps a header at 100 MB: far above the
JSON of any checkpoint here, a few hundred kB at most.)

Anything else in a checkpoint (a NumPy scalar, a named tuple, an object) is refused with a
``TypeError`` naming its key path: it is never pickled. Loading gives back the same nested dict
(``OrderedDict`` comes back as ``dict``, ``nn.Parameter`` as a tensor: equal values, the types
Lightning restores from anyway).

``zoo fit`` uses it by default (``zoo.train.run_lightning_cli``); a plain ``lightning.Trainer``
gets it with ``plugins=[SafetensorsCheckpointIO()]``. Zoo code that reads a checkpoint
(``zoo.card_from_checkpoint``, ``zoo finetune``) calls :func:`load_checkpoint`, which refuses a
pickled file and says how to convert it:

    python -m zoo.checkpoint_io convert OLD.ckpt NEW.ckpt

That command is the only place in the zoo that reads a pickle, and only for your own old files:
it uses ``torch.load(weights_only=True)`` (tensors and plain data only, no arbitrary objects).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from safetensors import safe_open
from safetensors.torch import save_file

#: the header metadata keys: the format (and its version) and the JSON structure
FORMAT_KEY, FORMAT = "format", "zoo-checkpoint/1"
STRUCTURE_KEY = "zoo_checkpoint"
CONVERT_COMMAND = "python -m zoo.checkpoint_io convert"

# JSON objects with exactly one of these keys are tagged values, not dicts
_TENSOR, _TUPLE, _FLOAT, _ITEMS = "__tensor__", "__tuple__", "__float__", "__items__"
_TAGS = frozenset({_TENSOR, _TUPLE, _FLOAT, _ITEMS})

#: what safetensors stores (``safetensors.torch``): anything else (complex, quantised) is refused
_DTYPES = {torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
           torch.int8, torch.uint8, torch.bool,
           *(getattr(torch, name) for name in ("float8_e4m3fn", "float8_e5m2", "uint16", "uint32", "uint64")
             if hasattr(torch, name))}


class CheckpointFormatError(ValueError):
    """A file that is not a zoo training checkpoint; the message says what it is and what to do."""


class PickledCheckpointError(CheckpointFormatError):
    """A ``torch.save`` pickle: refused (zoo never unpickles); the message gives the convert command."""


# ---- the nested dict <-> (tensors, JSON) ---------------------------------------------------------


def _shown_path(path: tuple) -> str:
    return "checkpoint" + "".join(f"[{key!r}]" for key in path)


def _tensor_name(path: tuple, taken: set[str]) -> str:
    """The key path as one safetensors name (``optimizer_states/0/state/3/exp_avg``), unique."""
    name = "/".join(str(key) for key in path) or "tensor"
    candidate, number = name, 1
    while candidate in taken:  # a dict key holding "/" could spell another path: keep both
        number += 1
        candidate = f"{name}#{number}"
    taken.add(candidate)
    return candidate


def flatten(checkpoint: dict) -> tuple[dict[str, torch.Tensor], Any]:
    """``(tensors, structure)``: the tensors by name, and the JSON-ready structure naming them.

    Raises TypeError, naming the key path, for a value that is neither a tensor nor plain data."""
    if not isinstance(checkpoint, dict):
        raise TypeError(f"a checkpoint is a dict, not {type(checkpoint).__name__}")
    tensors: dict[str, torch.Tensor] = {}
    storages: set[tuple] = set()

    def key_of(key, path):
        if key is None or isinstance(key, (bool, int, str)) or (isinstance(key, float) and math.isfinite(key)):
            return key
        if type(key) is tuple:
            return {_TUPLE: [key_of(k, path) for k in key]}
        raise TypeError(f"{_shown_path(path)} has a key of type {type(key).__name__} ({key!r}): checkpoint keys "
                        "are strings, numbers, bools, None or tuples of them")

    def encode(value, path):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value) if math.isfinite(value) else {_FLOAT: repr(float(value))}
        if isinstance(value, torch.Tensor):
            if value.layout != torch.strided or value.is_quantized or value.device.type == "meta":
                raise TypeError(f"{_shown_path(path)} is a {value.layout} tensor on {value.device} "
                                f"({'quantised' if value.is_quantized else value.dtype}): only dense tensors "
                                "with data are stored")
            if value.dtype not in _DTYPES:
                raise TypeError(f"{_shown_path(path)} is a {value.dtype} tensor, which safetensors does not store")
            tensor = value.detach().cpu().contiguous()
            storage = (tensor.untyped_storage().data_ptr(), tensor.device.type)
            if tensor.numel() and storage in storages:  # safetensors refuses tensors sharing memory
                tensor = tensor.clone()
            storages.add((tensor.untyped_storage().data_ptr(), tensor.device.type))
            name = _tensor_name(path, set(tensors))
            tensors[name] = tensor
            return {_TENSOR: name}
        if type(value) is list:
            return [encode(item, (*path, i)) for i, item in enumerate(value)]
        if type(value) is tuple:
            return {_TUPLE: [encode(item, (*path, i)) for i, item in enumerate(value)]}
        if isinstance(value, dict):  # OrderedDict (state dicts) included: read back as dict
            if all(type(k) is str for k in value) and not (len(value) == 1 and next(iter(value)) in _TAGS):
                return {k: encode(v, (*path, k)) for k, v in value.items()}
            return {_ITEMS: [[key_of(k, path), encode(v, (*path, k))] for k, v in value.items()]}
        raise TypeError(f"{_shown_path(path)} is a {type(value).__module__}.{type(value).__qualname__} "
                        f"({value!r:.80}): a zoo checkpoint holds tensors, dicts, lists, tuples, numbers, strings, "
                        "bools and None only, and never pickles an object; store it as one of those (e.g. "
                        "float(x) for a NumPy number, a dict for a named tuple)")

    return tensors, encode(checkpoint, ())


def unflatten(structure, tensors: dict[str, torch.Tensor] | Callable[[str], torch.Tensor]):
    """The nested checkpoint back from :func:`flatten`'s two parts (``tensors``: by name, or a
    function of the name, to read only those the structure names)."""
    tensor = tensors.__getitem__ if isinstance(tensors, dict) else tensors

    def decode(value):
        if isinstance(value, list):
            return [decode(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (tag, inner), = value.items()
            if tag == _TENSOR:
                return tensor(inner)
            if tag == _TUPLE:
                return tuple(decode(item) for item in inner)
            if tag == _FLOAT:
                return float(inner)
            if tag == _ITEMS:
                return {decode(k): decode(v) for k, v in inner}
        return {k: decode(v) for k, v in value.items()}

    return decode(structure)


# ---- files -----------------------------------------------------------------------------------------


def save_checkpoint(checkpoint: dict, path) -> Path:
    """Write ``checkpoint`` to ``path`` (a safetensors file; any name, Lightning's is ``.ckpt``),
    under a temporary name renamed when complete. TypeError names a value that cannot be stored."""
    from .audio import atomic_output

    tensors, structure = flatten(checkpoint)
    metadata = {FORMAT_KEY: FORMAT, STRUCTURE_KEY: json.dumps(structure, allow_nan=False, separators=(",", ":"))}
    path = Path(path)
    with atomic_output(path) as temporary:
        save_file(tensors, temporary, metadata=metadata)
    return path


def _header(path: Path) -> dict | None:
    """The safetensors header of ``path`` (its JSON), or None when the file is not safetensors."""
    with open(path, "rb") as file:
        start = file.read(8)
        if len(start) < 8:
            return None
        (size,) = struct.unpack("<Q", start)
        if size < 2 or size > 100_000_000:  # safetensors' own limit on the header
            return None
        text = file.read(size)
    if len(text) < size or not text.lstrip().startswith(b"{"):
        return None
    try:
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def is_pickle(path) -> bool:
    """True for what ``torch.save`` writes: a zip archive holding a pickle (PyTorch >= 1.6) or a
    bare pickle (older; protocol 2 to 5 starts with byte 0x80 and the protocol number). A
    safetensors file is never one, whatever its first bytes (its header length) happen to be."""
    if _header(path) is not None:
        return False
    with open(path, "rb") as file:
        start = file.read(4)
    return start.startswith(b"PK\x03\x04") or (len(start) >= 2 and start[0] == 0x80 and 2 <= start[1] <= 5)


def check_checkpoint(path) -> dict:
    """The header metadata of a zoo checkpoint at ``path``; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if is_pickle(path):
        raise PickledCheckpointError(
            f"{path} is a pickled PyTorch checkpoint (torch.save, Lightning's default format): zoo never unpickles "
            f"when it loads or resumes. If it is your own file, convert it once, then use the new file:\n"
            f"  {CONVERT_COMMAND} {path} {path.with_name(path.stem + '-safetensors' + path.suffix)}")
    header = _header(path)
    if header is None:
        raise CheckpointFormatError(f"{path} is neither a zoo training checkpoint (safetensors) nor a PyTorch "
                                    "checkpoint: pass the .ckpt file a zoo fit run wrote")
    metadata = header.get("__metadata__") or {}
    if metadata.get(FORMAT_KEY) != FORMAT or STRUCTURE_KEY not in metadata:
        found = metadata.get(FORMAT_KEY)
        raise CheckpointFormatError(
            f"{path} is a safetensors file but not a zoo training checkpoint ({FORMAT_KEY} {found!r}, expected "
            f"{FORMAT!r}): a card's model.safetensors holds weights only; pass the .ckpt a zoo fit run wrote")
    return metadata


def load_checkpoint(path, map_location=None, keys: Iterable[str] | None = None) -> dict:
    """The checkpoint dict saved by :func:`save_checkpoint`, tensors on ``map_location`` (a device
    or its name; anything else, or None: the CPU, where Lightning moves them from); with ``keys``,
    only those top-level entries (``["global_step"]`` reads no tensor at all). Nothing is
    unpickled: a ``torch.save`` file raises :class:`PickledCheckpointError` with the convert command."""
    metadata = check_checkpoint(path)
    structure = json.loads(metadata[STRUCTURE_KEY])
    if keys is not None:
        structure = {key: structure[key] for key in keys if key in structure}
    device = str(map_location) if isinstance(map_location, (str, torch.device)) else "cpu"
    with safe_open(str(path), framework="pt", device=device) as file:
        return unflatten(structure, file.get_tensor)


class SafetensorsCheckpointIO(CheckpointIO):
    """Lightning's checkpoint plug-in for :func:`save_checkpoint` / :func:`load_checkpoint`: what
    ``Trainer.save_checkpoint``, ``ModelCheckpoint`` and ``fit(ckpt_path=...)`` go through.

        trainer = lightning.Trainer(plugins=[SafetensorsCheckpointIO()])

    (``zoo fit`` adds it by itself.) Local files only, as the zoo's runs are."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError("Trainer.save_checkpoint(..., storage_options=...) is not supported by "
                            f"{type(self).__name__}: zoo checkpoints are local safetensors files")
        save_checkpoint(checkpoint, path)

    def load_checkpoint(self, path, map_location: Optional[Callable] = None,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        # weights_only is moot: nothing here can hold anything but tensors and plain data
        return load_checkpoint(path, map_location)

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)


def with_safetensors_checkpoints(plugins):
    """Trainer ``plugins`` with :class:`SafetensorsCheckpointIO` added, unless they already choose
    a checkpoint plug-in (respected: a deliberate choice); a wrapping plug-in without its own
    (``AsyncCheckpointIO()``) wraps this one."""
    from lightning.pytorch.plugins.io.wrapper import _WrappingCheckpointIO

    listed = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    for plugin in listed:
        if isinstance(plugin, _WrappingCheckpointIO) and plugin.checkpoint_io is None:
            plugin.checkpoint_io = SafetensorsCheckpointIO()
            return listed
        if isinstance(plugin, CheckpointIO):
            return listed
    return [*listed, SafetensorsCheckpointIO()]


# ---- the one-off conversion of an old pickled checkpoint -------------------------------------------


def convert(old, new) -> Path:
    """Rewrite a pickled Lightning checkpoint (``torch.save``) of your own as a zoo checkpoint.

    The only place the zoo reads a pickle: with ``torch.load(weights_only=True)``, PyTorch's
    restricted unpickler (tensors and plain data, no arbitrary objects), so a file holding more
    than that is refused rather than executed. ``new`` must be another file than ``old`` (which
    is never overwritten); check the new file resumes, then remove the old one yourself."""
    old, new = Path(old), Path(new)
    if not old.is_file():
        raise FileNotFoundError(f"{old}: no such checkpoint file")
    if new.exists() and new.resolve() == old.resolve():
        raise CheckpointFormatError(f"{new} is the file being converted: write a new file (the old one is kept until "
                                    "you remove it)")
    if not is_pickle(old):
        check_checkpoint(old)  # a clear error for anything that is not a checkpoint at all
        raise CheckpointFormatError(f"{old} is already a zoo checkpoint (safetensors): nothing to convert")
    import pickle

    try:
        checkpoint = torch.load(old, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointFormatError(
            f"{old} holds objects other than tensors and plain data, which zoo does not unpickle ({error}). "
            "If you trust the file, load it in your own code with torch.load(..., weights_only=False), replace "
            "those objects by plain values and write it with zoo.checkpoint_io.save_checkpoint") from None
    return save_checkpoint(checkpoint, new)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zoo.checkpoint_io", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("convert", help="rewrite a pickled Lightning checkpoint of yours as a zoo "
                                                  "checkpoint (safetensors + JSON)")
    command.add_argument("old", type=Path, help="the pickled .ckpt (torch.save)")
    command.add_argument("new", type=Path, help="the file to write (not OLD: it is kept)")
    args = parser.parse_args(argv)
    try:
        path = convert(args.old, args.new)
    except (CheckpointFormatError, FileNotFoundError) as error:
        parser.exit(2, f"zoo.checkpoint_io: error: {error}\n")
    checkpoint = load_checkpoint(path)  # read back: what was written is what a resume reads
    print(f"wrote {path} (step {checkpoint.get('global_step')}, {os.path.getsize(path)} bytes); "
          f"{args.old} is unchanged: remove it once {path} resumes", file=sys.stderr)


if __name__ == "__main__":
    main()
