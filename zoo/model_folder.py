"""A model folder on disk: ``config.json`` + ``model.safetensors`` (+ ``README.md``, the card).

The layout shared by the Hub repositories, their cached snapshots, the bundled ``hub_cards/``
and the folders ``zoo.card_from_checkpoint`` writes: how it is written (atomically, with stable
bytes), read and verified (sha256 against config.json), and how a sub-model (a loss network, a
mask estimator) named by card is rebuilt (``zoo.hub.load_component``). It imports nothing else of
zoo but ``audio`` (atomic writes), so the contract (``zoo.module``) and the Hub client both stand on it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import struct
from pathlib import Path

from . import __version__
from .paths import CARDS_ROOT, PROJECT_ROOT

logger = logging.getLogger("zoo")

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
CALIBRATION_NAME = "calibration.safetensors"

#: source releases this zoo converts on set-up, by the card name their conversion serves (the
#: folder name under ZOO_WEIGHTS that ``zoo convert`` reads)
CONVERTED_RELEASES = {
    "feature-loss-can": "germain2019",
    "feature-loss-net-germain2019": "germain2019-lossnet",
}


class ModelLoadError(RuntimeError):
    """A model folder that cannot be turned into a model; the message says why and what to do."""


class CorruptWeightsError(ModelLoadError):
    """Weights that do not match their config's checksum or are not valid safetensors."""


# ---- writing ----------------------------------------------------------------------------------


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_pretrained(model: "DenoiserModule", folder, name: str | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` for ``model`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    save_weights(state, folder / WEIGHTS_NAME, metadata={"format": "pt", "architecture": type(model).__name__})
    config = {
        "architecture": type(model).__name__,
        "init_args": _jsonable(dict(model.hparams)),
        "sample_rate": int(model.sample_rate),
        "weights_sha256": sha256_of(folder / WEIGHTS_NAME),
        "zoo_version": __version__,
    }
    if name:
        config["name"] = name
    write_json(folder / CONFIG_NAME, config)
    return folder


def save_weights(state: dict[str, "torch.Tensor"], path, metadata: dict[str, str]) -> Path:
    """``safetensors.torch.save_file`` under a temporary name, renamed when complete; the same
    tensors and metadata always give the same bytes (so the same sha256).

    safetensors serialises the metadata from a Rust ``HashMap``, whose order changes from one call
    to the next: with two keys, half the files differ in their header alone. The keys are put back
    in the order given (same length, so no offset moves)."""
    from safetensors.torch import save_file

    from .audio import atomic_output

    with atomic_output(path) as temporary:
        save_file(state, temporary, metadata=metadata)
        _order_metadata(temporary, metadata)
    return Path(path)


def _order_metadata(path, metadata: dict[str, str]) -> None:
    if len(metadata) < 2:
        return
    with open(path, "r+b") as handle:
        size = struct.unpack("<Q", handle.read(8))[0]
        header = handle.read(size)
        written = dict(json.loads(header)["__metadata__"])
        as_written, wanted = (json.dumps(m, separators=(",", ":"), ensure_ascii=False).encode()
                              for m in (written, dict(metadata)))
        if written != dict(metadata) or header.count(as_written) != 1 or len(as_written) != len(wanted):
            raise RuntimeError(f"{path}: unexpected safetensors header; cannot make its metadata order stable")
        handle.seek(8 + header.index(as_written))
        handle.write(wanted)


def write_json(path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_text(path, text: str) -> None:
    from .audio import atomic_output

    with atomic_output(path) as temporary:
        Path(temporary).write_text(text)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise TypeError(f"init argument value {value!r} cannot be stored in config.json")


# ---- reading ----------------------------------------------------------------------------------


def read_config(folder) -> dict:
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise ModelLoadError(f"{folder} is not a zoo model folder: it has no {CONFIG_NAME}")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{path} is not valid JSON ({error}); restore it from the Hub or hub_cards/") from error
    if not isinstance(config, dict) or "architecture" not in config:
        raise ModelLoadError(f"{path} names no 'architecture'; it was not written by zoo's save_pretrained")
    return config


def verify_weights(folder, config: dict) -> Path:
    """Refuse weights whose sha256 differs from what config.json promises."""
    weights = Path(folder) / WEIGHTS_NAME
    if not weights.is_file():
        if config.get("converted_from"):
            raise ModelLoadError(_missing_converted_weights(folder, config))
        raise ModelLoadError(f"{folder} has {CONFIG_NAME} but no {WEIGHTS_NAME}; the download is incomplete")
    expected = config.get("weights_sha256")
    if expected:
        actual = sha256_of(weights)
        if actual != expected:
            raise CorruptWeightsError(
                f"{weights} has sha256 {actual[:16]}... but {CONFIG_NAME} expects {expected[:16]}...: "
                "the file is corrupt or from another revision. Download it again "
                "(zoo.load(name, force_download=True)), or re-export the model."
            )
    else:
        logger.warning("%s has no weights_sha256: the weights cannot be verified", folder / CONFIG_NAME)
    return weights


def _missing_converted_weights(folder, config: dict) -> str:
    """Weights converted from someone else's release are not committed: say how to produce them."""
    from .registry import get_entry, is_registered

    name = config.get("name") or Path(folder).name
    release = CONVERTED_RELEASES.get(name, "THE_RELEASE")
    where = (f"zoo.load('{get_entry(name).hub_repo}') or `zoo denoise --model {get_entry(name).hub_repo}`"
             if is_registered(name) else "its ORG/NAME repository id")
    origin = config["converted_from"].get("release", "the authors' release") if isinstance(
        config["converted_from"], dict) else "the authors' release"
    return (f"{folder} has {CONFIG_NAME} but no {WEIGHTS_NAME}: these weights are converted from the authors' "
            f"release ({origin}) on set-up, never committed: run `zoo convert PATH_TO/{release}` "
            f"(or `make weights`, which reads ZOO_WEIGHTS, default ../shared/weights), "
            f"or load the published card from the Hub ({where})")


def _calibration(folder: Path, config: dict) -> dict:
    """Fixed normalisation statistics measured by the zoo (``zoo.calibrate``), kept beside weights
    converted from someone else's release and laid over them; checked by sha256 like the weights."""
    entry = config.get("calibration")
    if not entry:
        return {}
    path = folder / entry.get("file", CALIBRATION_NAME)
    if not path.is_file():
        raise ModelLoadError(f"{folder} lacks {path.name}, which its {CONFIG_NAME} names; download the folder again")
    if entry.get("sha256") and sha256_of(path) != entry["sha256"]:
        raise CorruptWeightsError(f"{path} does not match the sha256 in {CONFIG_NAME}; download it again")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CorruptWeightsError(f"{path} is not a valid safetensors file ({error}); download it again") from error


# ---- card folders that must not be written --------------------------------------------------------

#: where card_from_checkpoint, zoo finetune and zoo interpolate put new card folders without ``--out``
DEFAULT_CARDS_DIR = Path("runs") / "cards"
#: the published cards (``hub_cards/``): never written by training, export or fine-tuning
PUBLISHED_CARDS = CARDS_ROOT


class CardFolderError(ValueError):
    """A card folder that would overwrite a published card or cannot be made; the message says what to do."""


def published_card_of(folder) -> Path | None:
    """The published card folder (``hub_cards/NAME``) that ``folder`` is or lies in, else None."""
    folder, cards = Path(folder).resolve(), PUBLISHED_CARDS.resolve()
    if folder == cards or cards in folder.parents:
        return cards / folder.relative_to(cards).parts[0] if folder != cards else cards
    return None


def refuse_published_card(folder) -> None:
    """Training, export and fine-tuning never write into a published card: ``zoo.load(NAME)``
    would silently return other weights than the ones its card describes and scores."""
    card = published_card_of(folder)
    if card is not None:
        raise CardFolderError(f"{folder} is (inside) the published card {card.relative_to(PROJECT_ROOT)}: exports and "
                          "fine-tunes never write there; pass --out NEW_FOLDER (to replace a published card on "
                          "purpose: export elsewhere, check it, copy the files over and re-render the card with "
                          "`zoo card`)")


def new_folder(parent, stem: str) -> Path:
    """``parent/stem``, or ``parent/stem-2``, ``-3`` ... : the first that does not exist yet."""
    parent = Path(parent)
    candidate, number = parent / stem, 1
    while candidate.exists():
        number += 1
        candidate = parent / f"{stem}-{number}"
    return candidate
