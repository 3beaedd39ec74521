"""Saving, loading and publishing models in the Hugging Face Hub layout.

A model folder (a Hub repository, its cached snapshot, or a bundled ``hub_cards/<name>``) holds

- ``config.json``: ``architecture`` (a DenoiserModule class name), ``init_args``,
  ``sample_rate`` and ``weights_sha256``; enough to rebuild the model with no recipe;
- ``model.safetensors``: the weights (nothing is ever unpickled);
- ``README.md``: the model card, whose YAML header carries the Hub metadata and ``model-index``.

``zoo.load`` looks for a local folder, then the Hub (through huggingface_hub, which honours
``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, revisions and its cache), then the copy bundled in
``hub_cards/``, and records which one it used in ``model.zoo_source``.

No call waits on the network for longer than ``ZOO_HUB_TIMEOUT`` seconds (default 10) without
progress: a Hub that accepts connections and never answers (huggingface_hub itself waits forever
on metadata requests, whatever ``HF_HUB_ETAG_TIMEOUT`` says) is given up after that long, and the
cached snapshot or the bundled copy is used instead, with the reason in ``model.zoo_source``.

torch, safetensors.torch and huggingface_hub are imported where they are used: ``zoo info`` and
``zoo list`` read configs and cards without them.
"""
from __future__ import annotations

import importlib
import json
import logging
import math
import os
import threading
import time
from pathlib import Path

from . import __version__
from .model_folder import (CALIBRATION_NAME, CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, CorruptWeightsError,  # noqa: F401
                           ModelLoadError, _calibration, read_config, save_pretrained, save_weights, sha256_of,
                           verify_weights, write_json, write_text)
from .registry import UnknownModelError, find_by_hub_repo, get_entry, is_registered, unknown_name_message

logger = logging.getLogger("zoo")

HUB_FILES = [CONFIG_NAME, WEIGHTS_NAME, CALIBRATION_NAME, CARD_NAME, "*.png"]


class ModelNotAvailableError(ModelLoadError):
    """A model (or revision) that is neither on the reachable Hub, in the cache, nor bundled."""


class PublishError(RuntimeError):
    """An upload the Hub could not take or refused; the message says why and what to do."""


class HubTimeoutError(TimeoutError):
    """The Hub did not answer (or a download made no progress) within ``ZOO_HUB_TIMEOUT`` seconds."""


#: how long zoo waits for the Hub to answer (or for the next bytes of a download) before it uses
#: the cache or the bundled copy; ``ZOO_HUB_TIMEOUT`` (seconds) overrides it.
HUB_TIMEOUT_ENV = "ZOO_HUB_TIMEOUT"
DEFAULT_HUB_TIMEOUT = 10.0


def hub_timeout() -> float:
    """``ZOO_HUB_TIMEOUT`` in seconds (default 10): a positive, finite number."""
    raw = os.environ.get(HUB_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_HUB_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise ModelLoadError(f"{HUB_TIMEOUT_ENV}={raw!r} is not a positive number of seconds; "
                             f"unset it for the default ({DEFAULT_HUB_TIMEOUT:g} s)")
    return value


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
    architecture = config["architecture"]
    known = buildable_architectures()
    cls = known.get(architecture)
    if cls is None:
        raise ModelLoadError(
            f"{folder / CONFIG_NAME} names architecture '{architecture}', which this zoo cannot build "
            f"(it builds: {', '.join(sorted(known))}); upgrade zoo or check the folder"
        )
    # options: the config's init arguments, and arguments the class gained since it was written
    # (``runtime`` of the CANs) with their defaults
    import inspect

    accepted = set(config.get("init_args", {})) | (set(inspect.signature(cls.__init__).parameters) - {"self"})
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ModelLoadError(f"{folder.name} has no option {', '.join(unknown)}; its options are "
                             f"{', '.join(sorted(accepted))} (zoo info shows their values)")
    weights = verify_weights(folder, config)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

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


def buildable_architectures() -> dict[str, type]:
    """Architecture names a config.json may give: DenoiserModule subclasses with their own
    ``__init__`` (whose arguments are the config's ``init_args``). Shared bases such as
    ``CANDenoiserBase`` define no arguments and cannot be built from a config."""
    # The built-in models are plug-ins of this loader, imported by name: they may use the Hub
    # (zoo.models.feature_loss loads its loss network with load_component), the Hub never names them.
    importlib.import_module("zoo.models")
    from .module import ARCHITECTURES

    return {name: cls for name, cls in ARCHITECTURES.items() if "__init__" in vars(cls)}


def download(repo_id: str, revision: str | None = None, force_download: bool = False,
             timeout: float | None = None) -> Path:
    """Snapshot of a Hub model repository (only the files a zoo model needs), via the HF cache.

    Raises :class:`HubTimeoutError` when the Hub has not answered within ``timeout`` seconds
    (``ZOO_HUB_TIMEOUT``, default 10), or a download has made no progress for that long. The
    request is left to finish in a background thread (its result, if any, lands in the cache)."""
    from huggingface_hub import snapshot_download

    timeout = hub_timeout() if timeout is None else timeout
    path = _within(timeout, _endpoint(), snapshot_download, repo_id, revision=revision, allow_patterns=HUB_FILES,
                   force_download=force_download, library_name="zoo", library_version=__version__,
                   progress=lambda: _download_progress(repo_id))
    return Path(path)


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _download_progress(repo_id: str) -> int:
    """Bytes in the repository's cache folder (blobs being written included)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    blobs = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model") / "blobs"
    try:
        return sum(entry.stat().st_size for entry in os.scandir(blobs) if entry.is_file())
    except OSError:
        return 0


def _cached_snapshot(repo_id: str, revision: str | None) -> Path | None:
    """The snapshot huggingface_hub would use offline, or None (no network involved)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_FILES, local_files_only=True))
    except (OSError, ValueError):
        return None


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


def _hub_failures() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    return (HubTimeoutError, HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError, *_transport_errors())


def hub_reason(error: BaseException, repo_id: str, revision: str | None = None) -> str:
    """Why the Hub gave nothing, as one complete clause (never a quotation cut mid-sentence)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    endpoint = _endpoint()
    if isinstance(error, HubTimeoutError):
        return str(error)
    if isinstance(error, OfflineModeIsEnabled) or (isinstance(error, LocalEntryNotFoundError)
                                                   and constants.HF_HUB_OFFLINE):
        return "HF_HUB_OFFLINE is set, and the Hugging Face cache holds no copy"
    if isinstance(error, LocalEntryNotFoundError):
        return f"the Hub at {endpoint} could not be reached, and the Hugging Face cache holds no copy"
    if isinstance(error, RevisionNotFoundError):
        return f"the Hub at {endpoint} has no revision '{revision}' of {repo_id}"
    if isinstance(error, RepositoryNotFoundError):
        return f"the Hub at {endpoint} has no repository {repo_id} (or it is private and you are not logged in)"
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        return f"the Hub at {endpoint} answered HTTP {error.response.status_code} {error.response.reason_phrase}"
    if isinstance(error, _transport_errors()):
        return f"the connection to the Hub at {endpoint} failed ({type(error).__name__}: {_first_line(error)})"
    return f"{type(error).__name__}: {_first_line(error)}"


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else "no detail"


def hub_fix(error: BaseException) -> str:
    """What to do about a Hub failure, as an imperative clause."""
    from huggingface_hub import constants
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    if constants.HF_HUB_OFFLINE:
        return "unset HF_HUB_OFFLINE to download it"
    if isinstance(error, HubTimeoutError):
        return f"check the network and HF_ENDPOINT, or allow more time with {HUB_TIMEOUT_ENV}=SECONDS"
    if isinstance(error, RevisionNotFoundError):
        return "check the revision (a branch, tag or commit of the repository)"
    if isinstance(error, RepositoryNotFoundError):
        return "check the repository id, or log in (`hf auth login`) if it is private"
    return "check the network and HF_ENDPOINT"


def _looks_like_path(name: str) -> bool:
    return "/" in name or "\\" in name or name.startswith((".", "~"))


def _could_be_repo_id(name: str) -> bool:
    """``ORG/NAME`` (one slash, no leading ``/``, ``.`` or ``~``): a Hub repository id."""
    return name.count("/") == 1 and "\\" not in name and not name.startswith(("/", ".", "~")) \
        and not name.endswith("/")


def resolve(name_or_path: str, revision: str | None = None, force_download: bool = False) -> tuple[Path, str]:
    """Find the folder for a name, path or repo id; return it and a sentence saying where from.

    A registered name wins over a folder of the same name in the working directory; write
    ``./wiener`` to mean the folder. A registered model's repository id (``zoo-denoise/wiener``)
    is that model: the Hub first, then the cache, then its bundled copy.
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir() and (_looks_like_path(name) or not is_registered(name)):
        return path, f"local folder {path}"
    entry = get_entry(name) if is_registered(name) else (find_by_hub_repo(name) if _could_be_repo_id(name) else None)
    if entry is not None:
        return _resolve_registered(entry, name, revision, force_download)
    if _could_be_repo_id(name) and not path.exists():
        try:
            folder = download(name, revision, force_download)
        except _hub_failures() as error:
            reason = hub_reason(error, name, revision)
            raise ModelNotAvailableError(
                f"'{name}' is not a folder here, and as a Hub repository id it could not be fetched: {reason}. "
                f"Tried: a folder ./{name}, the Hub at {_endpoint()}, the Hugging Face cache. "
                f"To use it, {hub_fix(error)}; or pass a registered model ({', '.join(_registered())})") from error
        return folder, f"Hugging Face Hub {name}@{folder.name[:12]}"
    if path.is_file():
        raise ModelLoadError(f"{path} is a file; pass the folder that holds config.json and model.safetensors")
    if _looks_like_path(name):
        raise ModelLoadError(f"{path}: no such folder (a model folder holds config.json and model.safetensors; "
                             f"registered models: {', '.join(_registered())})")
    raise UnknownModelError(unknown_name_message(name))


def _registered() -> list[str]:
    from .registry import list_models

    return list_models()


def _resolve_registered(entry, asked: str, revision: str | None, force_download: bool) -> tuple[Path, str]:
    """A registered model: its Hub repository (and the HF cache), else its bundled card folder."""
    try:
        folder = download(entry.hub_repo, revision, force_download)
        return folder, f"Hugging Face Hub {entry.hub_repo}@{folder.name[:12]}"
    except _hub_failures() as error:
        reason = hub_reason(error, entry.hub_repo, revision)
        if isinstance(error, HubTimeoutError):  # huggingface_hub never got to its own cache fallback
            cached = _cached_snapshot(entry.hub_repo, revision)
            if cached is not None:
                return cached, f"Hugging Face Hub {entry.hub_repo}@{cached.name[:12]} from the cache ({reason})"
        if revision is not None:
            raise ModelNotAvailableError(
                f"revision '{revision}' of {entry.hub_repo} could not be fetched: {reason}. "
                f"The bundled copy is not used for a pinned revision: {hub_fix(error)}"
            ) from error
        card = entry.card_path
        if (card / CONFIG_NAME).is_file() and (card / WEIGHTS_NAME).is_file():
            return card, f"bundled copy {entry.card} (Hub not used: {reason})"
        if (card / CONFIG_NAME).is_file():
            fix = ("its weights are converted from the authors' release on set-up, never committed: "
                   "run `zoo convert PATH_TO_RELEASE` or `make weights`"
                   if _is_converted(card) else "restore the weights from a release or re-export the model")
            raise ModelNotAvailableError(
                f"model '{asked}' is not available here: the Hub gave nothing ({reason}), and its bundled copy "
                f"{entry.card} has no {WEIGHTS_NAME}. Tried: the Hub repository {entry.hub_repo}, the Hugging Face "
                f"cache, {entry.card}. To use it, {hub_fix(error)}; or {fix}") from error
        raise ModelNotAvailableError(
            f"model '{asked}' is not available here: the Hub gave nothing ({reason}), and it has no bundled copy "
            f"in {entry.card}. To use it, {hub_fix(error)}") from error


def _is_converted(card: Path) -> bool:
    try:
        return bool(read_config(card).get("converted_from"))
    except ModelLoadError:
        return False


def load(name_or_path: str, revision: str | None = None, device: "str | torch.device | None" = None,
         force_download: bool = False, **options) -> "DenoiserModule":
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


def load_component(name_or_path: str, expected: type, *, revision: str | None = None):
    """A sub-model named by card (a loss network, a mask estimator), rebuilt from its folder.

    ``name_or_path``: a card folder, the name of a folder bundled in ``hub_cards/`` (a component
    that is not a registered model, such as ``feature-loss-net``), a registered model's name, or a
    Hub ``ORG/NAME``. ``expected``: the class the caller can use; the folder's ``config.json`` must
    name it (or a subclass of it), and the class is built from its ``init_args`` with the folder's
    sha256-verified safetensors weights. Returned in eval mode with gradients off: a component is
    a frozen part of another model, not trained with it."""
    from .paths import CARDS_ROOT

    name = str(name_or_path)
    bundled = CARDS_ROOT / name
    if not Path(name).expanduser().is_dir() and not is_registered(name) and (bundled / CONFIG_NAME).is_file():
        folder = bundled
    else:
        folder, _ = resolve(name, revision)
    config = read_config(folder)
    architecture = config["architecture"]
    candidates = {cls.__name__: cls for cls in _subclasses(expected)}
    cls = candidates.get(architecture)
    if cls is None:
        raise ModelLoadError(f"{folder} holds a {architecture}, not a {expected.__name__}: name a card of a "
                             f"{expected.__name__} ({', '.join(sorted(candidates))})")
    from safetensors.torch import load_file

    try:
        component = cls(**config.get("init_args", {}))
    except (TypeError, ValueError) as error:
        raise ModelLoadError(f"{folder / CONFIG_NAME}: init_args do not fit {architecture} ({error})") from error
    try:
        component.load_state_dict(load_file(str(verify_weights(folder, config))))
    except RuntimeError as error:
        raise CorruptWeightsError(f"{folder / WEIGHTS_NAME} does not fit {architecture} as configured: {error}") from error
    for parameter in component.parameters():
        parameter.requires_grad_(False)
    component.zoo_folder = folder
    return component.eval()


def _subclasses(cls: type) -> list[type]:
    found, pending = [cls], [cls]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub not in found:
                found.append(sub)
                pending.append(sub)
    return found


# ---- publishing -------------------------------------------------------------------------------


def publish(name_or_path: str, repo_id: str, *, api=None, private: bool = False,
            revision: str | None = None, commit_message: str | None = None):
    """Upload a model card folder (config, weights, card, figures) to ``repo_id`` in one commit.

    The Hub gets ``ZOO_HUB_TIMEOUT`` seconds to answer the first request (creating the
    repository); the upload itself is not time-limited. Every refusal or network failure is
    raised as :class:`PublishError`, one sentence saying what to do (the Hub's error is its cause)."""
    path = Path(name_or_path)
    if path.is_dir() and (_looks_like_path(str(name_or_path)) or not is_registered(str(name_or_path))):
        folder = path
    elif _looks_like_path(str(name_or_path)) and not is_registered(str(name_or_path)):
        raise ModelLoadError(f"{path}: no such folder; publish a card folder (config.json, model.safetensors, "
                             "README.md) or a registered model")
    else:
        folder = get_entry(name_or_path).card_path
    load_folder(folder)  # refuse to publish anything that would not load back
    if not (folder / CARD_NAME).is_file():
        raise ModelLoadError(f"{folder} has no {CARD_NAME} model card; write one before publishing")
    timeout = hub_timeout()
    from huggingface_hub import CommitOperationAdd, HfApi

    api = api or HfApi()
    endpoint = getattr(api, "endpoint", None) or _endpoint()
    try:
        _within(timeout, endpoint, api.create_repo, repo_id, repo_type="model", private=private, exist_ok=True)
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        operations = [CommitOperationAdd(path_in_repo=p.name, path_or_fileobj=str(p)) for p in files]
        return api.create_commit(repo_id, operations, repo_type="model", revision=revision,
                                 commit_message=commit_message or f"Upload {folder.name} with zoo {__version__}")
    except _hub_failures() as error:
        raise PublishError(_publish_message(error, repo_id, endpoint)) from error


def _within(timeout: float, endpoint: str, call, *args, progress=None, **kwargs):
    """``call(*args, **kwargs)`` in a worker thread; HubTimeoutError if it has not returned within
    ``timeout`` s, or, with ``progress`` (a callable whose value changes while bytes arrive), within
    ``timeout`` s of the last change: a slow download is not a silent Hub. The call is left to finish
    in the background (a download's result, if any, lands in the cache)."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call(*args, **kwargs)
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=run, name="zoo Hub request", daemon=True)
    worker.start()
    seen = progress() if progress else None
    deadline = time.monotonic() + timeout
    while worker.is_alive():
        worker.join(min(0.25, max(0.0, deadline - time.monotonic())))
        if not worker.is_alive():
            break
        now = progress() if progress else None
        if now != seen:
            seen, deadline = now, time.monotonic() + timeout
        elif time.monotonic() >= deadline:
            raise HubTimeoutError(f"the Hub at {endpoint} did not answer within {timeout:g} s ({HUB_TIMEOUT_ENV})")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _publish_message(error: BaseException, repo_id: str, endpoint: str) -> str:
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    nothing = "nothing was uploaded"
    if isinstance(error, OfflineModeIsEnabled) or constants.HF_HUB_OFFLINE:
        return f"cannot publish {repo_id}: HF_HUB_OFFLINE is set; unset it and try again ({nothing})"
    if isinstance(error, HubTimeoutError):
        return (f"cannot publish {repo_id}: {error}; check the network and HF_ENDPOINT, or allow more time with "
                f"{HUB_TIMEOUT_ENV}=SECONDS ({nothing})")
    response = getattr(error, "response", None) if isinstance(error, HfHubHTTPError) else None
    if response is not None:
        status = f"HTTP {response.status_code} {response.reason_phrase}".strip()
        if response.status_code == 401:
            fix = "log in with `hf auth login` or set HF_TOKEN to a token with write access"
        elif response.status_code == 403:
            fix = f"your token may not write to '{repo_id.split('/')[0]}': use a token with write access to it"
        elif response.status_code in (404, 405, 501):
            fix = ("this server does not accept uploads (a read-only mirror?): point HF_ENDPOINT at a Hub that "
                   "does, or unset it for huggingface.co")
        elif response.status_code == 409:
            fix = "the repository or branch is in a conflicting state: check it on the Hub and try again"
        else:
            fix = "try again later, or check the repository on the Hub"
        return f"the Hub at {endpoint} refused to publish {repo_id} ({status}); {fix} ({nothing})"
    return (f"cannot publish {repo_id}: the Hub at {endpoint} could not be reached "
            f"({type(error).__name__}: {_first_line(error)}); check the network and HF_ENDPOINT ({nothing})")
