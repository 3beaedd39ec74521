"""Saving, loading and publishing models in the Hugging Face Hub layout.

A model folder (a Hub repository, its cached snapshot, or a bundled ``hub_cards/<name>``) holds

- ``config.json``: ``architecture`` (a DenoiserModule class name), ``init_args``,
  ``sample_rate`` and ``weights_sha256``; enough to rebuild the model with no recipe;
- ``model.safetensors``: the weights (nothing is ever unpickled);
- ``README.md``: the model card, whose YAML header carries the Hub metadata and ``model-index``.

``zoo.load`` looks for a local folder, then the Hub (through huggingface_hub, which honours
``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, revisions and its cache), then the copy bundled in
``hub_cards/``, and records which one it used in ``model.zoo_source``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import struct
from pathlib import Path

import torch
from huggingface_hub import CommitOperationAdd, HfApi, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .audio import atomic_output
from .module import ARCHITECTURES, DenoiserModule
from .registry import UnknownModelError, get_entry, is_registered, unknown_name_message

logger = logging.getLogger("zoo")

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
CALIBRATION_NAME = "calibration.safetensors"
HUB_FILES = [CONFIG_NAME, WEIGHTS_NAME, CALIBRATION_NAME, CARD_NAME, "*.png"]


class ModelLoadError(RuntimeError):
    """A model folder that cannot be turned into a model; the message says why and what to do."""


class CorruptWeightsError(ModelLoadError):
    """Weights that do not match their config's checksum or are not valid safetensors."""


class ModelNotAvailableError(ModelLoadError):
    """A model (or revision) that is neither on the reachable Hub, in the cache, nor bundled."""


# ---- writing ----------------------------------------------------------------------------------


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_pretrained(model: DenoiserModule, folder, name: str | None = None) -> Path:
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


def save_weights(state: dict[str, torch.Tensor], path, metadata: dict[str, str]) -> Path:
    """``safetensors.torch.save_file`` under a temporary name, renamed when complete; the same
    tensors and metadata always give the same bytes (so the same sha256).

    safetensors serialises the metadata from a Rust ``HashMap``, whose order changes from one call
    to the next: with two keys, half the files differ in their header alone. The keys are put back
    in the order given (same length, so no offset moves)."""
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
    from .convert import SOURCES

    name = config.get("name") or Path(folder).name
    release = SOURCES.get(name, "THE_RELEASE")
    where = (f"zoo.load('{get_entry(name).hub_repo}') or `zoo denoise --model {get_entry(name).hub_repo}`"
             if is_registered(name) else "its ORG/NAME repository id")
    origin = config["converted_from"].get("release", "the authors' release") if isinstance(
        config["converted_from"], dict) else "the authors' release"
    return (f"{folder} has {CONFIG_NAME} but no {WEIGHTS_NAME}: these weights are converted from the authors' "
            f"release ({origin}) on set-up, never committed: run `zoo convert PATH_TO/{release}` "
            f"(or `make weights`, which reads ZOO_WEIGHTS, default ../shared/weights), "
            f"or load the published card from the Hub ({where})")


def parse_model_spec(spec: str) -> tuple[str, dict]:
    """``"NAME:key=value,key=value"`` -> (NAME, options): a model with some of its init arguments
    changed, e.g. ``feature-loss-can:normalization=calibrated``. Values are read as JSON where
    they parse (numbers, true/false) and as text otherwise."""
    name, _, rest = str(spec).partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ModelLoadError(f"{spec!r}: options after ':' are key=value pairs separated by commas, "
                                 "e.g. feature-loss-can:normalization=calibrated")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return name, options


def load_folder(folder, **options) -> DenoiserModule:
    """Rebuild a model from a folder: config.json -> class(**init_args) -> safetensors weights.
    ``options`` change init arguments the folder's config.json has (``normalization``, say)."""
    folder = Path(folder)
    config = read_config(folder)
    unknown = sorted(set(options) - set(config.get("init_args", {})))
    if unknown:
        raise ModelLoadError(f"{folder.name} has no option {', '.join(unknown)}; its options are "
                             f"{', '.join(sorted(config.get('init_args', {})))} (zoo info shows their values)")
    architecture = config["architecture"]
    cls = ARCHITECTURES.get(architecture)
    if cls is None:
        raise ModelLoadError(
            f"{folder / CONFIG_NAME} names architecture '{architecture}', which this zoo does not have "
            f"(known: {', '.join(sorted(ARCHITECTURES))}); upgrade zoo or check the folder"
        )
    weights = verify_weights(folder, config)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as error:
        raise CorruptWeightsError(f"{weights} is not a valid safetensors file ({error}); download it again") from error
    try:
        model = cls(**{**config.get("init_args", {}), **options})
    except (TypeError, ValueError) as error:
        raise ModelLoadError(f"{folder / CONFIG_NAME}: init_args do not fit {architecture} ({error})") from error
    try:
        model.load_state_dict({**state, **_calibration(folder, config)}, strict=True)
    except RuntimeError as error:
        raise CorruptWeightsError(f"{weights} does not fit {architecture} as configured: {error}") from error
    return model.eval()


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
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CorruptWeightsError(f"{path} is not a valid safetensors file ({error}); download it again") from error


def download(repo_id: str, revision: str | None = None, force_download: bool = False) -> Path:
    """Snapshot of a Hub model repository (only the files a zoo model needs), via the HF cache."""
    path = snapshot_download(repo_id, revision=revision, allow_patterns=HUB_FILES, force_download=force_download,
                             library_name="zoo", library_version=__version__)
    return Path(path)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's own errors (a connection cut during a download escapes huggingface_hub
    unwrapped); huggingface_hub 2.x uses httpx2, 1.x httpx, 0.x requests."""
    errors = []
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


_HUB_FAILURES = (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError, *_transport_errors())


def _looks_like_path(name: str) -> bool:
    return "/" in name or "\\" in name or name.startswith((".", "~"))


def resolve(name_or_path: str, revision: str | None = None, force_download: bool = False) -> tuple[Path, str]:
    """Find the folder for a name, path or repo id; return it and a sentence saying where from.

    A registered name wins over a folder of the same name in the working directory; write
    ``./wiener`` to mean the folder.
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir() and (_looks_like_path(name) or not is_registered(name)):
        return path, f"local folder {path}"
    if is_registered(name):
        entry = get_entry(name)
        try:
            folder = download(entry.hub_repo, revision, force_download)
            return folder, f"Hugging Face Hub {entry.hub_repo}@{folder.name[:12]}"
        except _HUB_FAILURES as error:
            reason = _one_line(error)
            if revision is not None:
                raise ModelNotAvailableError(
                    f"revision '{revision}' of {entry.hub_repo} could not be fetched ({reason}); "
                    "check the revision, HF_ENDPOINT and the network, or unset HF_HUB_OFFLINE"
                ) from error
            if (entry.card_path / CONFIG_NAME).is_file():
                return entry.card_path, f"bundled copy {entry.card} (Hub not used: {reason})"
            raise ModelNotAvailableError(
                f"model '{name}' is not on the reachable Hub ({reason}) and has no bundled copy in {entry.card}"
            ) from error
    if name.count("/") == 1 and not path.exists():
        try:
            folder = download(name, revision, force_download)
        except _HUB_FAILURES as error:
            raise ModelNotAvailableError(
                f"'{name}' is neither a registered model, a folder, nor a reachable Hub repo ({_one_line(error)}). "
                + unknown_name_message(name)) from error
        return folder, f"Hugging Face Hub {name}@{folder.name[:12]}"
    if path.exists():
        raise ModelLoadError(f"{path} is a file; pass the folder that holds config.json and model.safetensors")
    raise UnknownModelError(unknown_name_message(name))


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:200]


def load(name_or_path: str, revision: str | None = None, device: str | torch.device | None = None,
         force_download: bool = False, **options) -> DenoiserModule:
    """A pretrained model in eval mode: ``zoo.load("wiener")``, a folder, or ``"ORG/NAME"``.

    ``revision``: a Hub branch, tag or commit; ``force_download``: fetch the files again even if
    cached (after a corrupt download). ``options`` (or ``"NAME:key=value,..."``) change init
    arguments of the model's config, e.g. ``zoo.load("feature-loss-can", normalization="calibrated")``.
    """
    name_or_path, spec_options = parse_model_spec(name_or_path)
    folder, source = resolve(name_or_path, revision, force_download)
    model = load_folder(folder, **{**spec_options, **options})
    if device is not None:
        model = model.to(device)
    model.zoo_source = source
    model.zoo_folder = folder
    logger.info("loaded %s from %s", name_or_path, source)
    return model


# ---- publishing -------------------------------------------------------------------------------


def publish(name_or_path: str, repo_id: str, *, api: HfApi | None = None, private: bool = False,
            revision: str | None = None, commit_message: str | None = None):
    """Upload a model card folder (config, weights, card, figures) to ``repo_id`` in one commit."""
    path = Path(name_or_path)
    if path.is_dir() and (_looks_like_path(str(name_or_path)) or not is_registered(str(name_or_path))):
        folder = path
    else:
        folder = get_entry(name_or_path).card_path
    load_folder(folder)  # refuse to publish anything that would not load back
    if not (folder / CARD_NAME).is_file():
        raise ModelLoadError(f"{folder} has no {CARD_NAME} model card; write one before publishing")
    api = api or HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    operations = [CommitOperationAdd(path_in_repo=p.name, path_or_fileobj=str(p)) for p in files]
    return api.create_commit(repo_id, operations, repo_type="model", revision=revision,
                             commit_message=commit_message or f"Upload {folder.name} with zoo {__version__}")
