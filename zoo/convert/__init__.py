"""``zoo convert``: someone else's released weights -> a zoo card folder, produced on set-up.

Weights converted from another project's release are never committed: the card folder in
``hub_cards/`` holds the card and a ``config.json`` whose ``weights_sha256`` says what the
conversion must produce, and ``zoo convert`` (run by ``make demo`` / ``make test``, or by a user
with the authors' files) writes ``model.safetensors`` beside them after checking it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..model_folder import CONVERTED_RELEASES
from .tf_bundle import BundleError, TensorBundle, bundle_prefix  # noqa: F401

WEIGHTS_NAME = "model.safetensors"  # = zoo.hub.WEIGHTS_NAME, without importing torch for a check

#: source releases this zoo knows, by the registered name their conversion serves
SOURCES = CONVERTED_RELEASES


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_bundle(src, out) -> tuple[Path, str]:
    """Convert a released TensorFlow bundle into ``out`` (config.json + model.safetensors + README.md).

    Returns the folder and the registered name the weights are for."""
    from .germain2019 import kind_of
    from .cards import write_card

    bundle = TensorBundle(src)
    kind = kind_of(bundle)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if kind == "can":
        name, config = _convert_can(bundle, out)
    else:
        name, config = _convert_loss_network(bundle, out)
    write_card(out, name, bundle, config)
    return out, name


def _sources(bundle: TensorBundle) -> dict[str, str]:
    return {p.name: file_sha256(p) for p in [bundle.index_path, *bundle.data_files()]}


def _convert_can(bundle: TensorBundle, out: Path) -> tuple[str, dict]:
    import torch

    from ..hub import read_config, save_pretrained
    from ..models.feature_loss import FeatureLossCAN
    from .germain2019 import can_state_dict

    state, init_args = can_state_dict(bundle)
    model = FeatureLossCAN(**init_args, loss_network="feature-loss-net-germain2019", lr=1e-4, warmup_epochs=1)
    model.load_state_dict({**model.state_dict(), **state})
    model.eval()
    save_pretrained(model, out, name="feature-loss-can")
    return "feature-loss-can", _add_source(out, bundle)


def _convert_loss_network(bundle: TensorBundle, out: Path) -> tuple[str, dict]:
    from ..hub import WEIGHTS_NAME, save_weights, write_json
    from ..models.feature_loss import FeatureLossNet
    from .germain2019 import loss_network_state_dict

    state, init_args = loss_network_state_dict(bundle)
    net = FeatureLossNet(**init_args)
    net.load_state_dict(state)
    weights = out / WEIGHTS_NAME
    save_weights({k: v.contiguous() for k, v in net.state_dict().items()}, weights,
                 metadata={"format": "pt", "architecture": "FeatureLossNet"})
    write_json(out / "config.json", {"architecture": "FeatureLossNet", "init_args": init_args,
                                     "weights_sha256": file_sha256(weights), "name": "feature-loss-net-germain2019"})
    return "feature-loss-net-germain2019", _add_source(out, bundle)


def _add_source(out: Path, bundle: TensorBundle) -> dict:
    import json

    from ..hub import write_json

    config = json.loads((out / "config.json").read_text())
    config.pop("zoo_version", None)  # the converted weights do not depend on the zoo's version
    config["converted_from"] = {"release": "Germain, Chen & Koltun 2019 (MIT license)",
                                "files_sha256": _sources(bundle)}
    write_json(out / "config.json", config)
    return config


# ---- installing: the CLI's `zoo convert` ------------------------------------------------------

#: the card folders that hold the committed config.json + README.md of each converted release
from ..paths import CARDS_ROOT  # noqa: E402


class ConvertError(ValueError):
    """A conversion that would not give the promised weights, or a target that must not be written."""


@dataclass
class Converted:
    """What ``install_converted`` / ``convert_into`` did: ``status`` is "installed", "verified"
    (the card already held these weights) or "written" (a complete card folder under --out)."""

    name: str
    folder: Path
    sha256: str
    status: str
    files: list[Path]
    note: str = ""


def _committed_config(card: Path) -> dict:
    config_path = card / "config.json"
    if not config_path.is_file():
        raise ConvertError(f"{card} holds no committed config.json: restore the card folder from the repository "
                           "(git checkout), or convert into another folder with --out DIR")
    try:
        return json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConvertError(f"{config_path} is not valid JSON ({error}); restore it from the repository") from error


def _source_differences(bundle: TensorBundle, config: dict) -> list[str]:
    """Source files whose sha256 differs from what the card's config.json records."""
    expected = (config.get("converted_from") or {}).get("files_sha256") or {}
    actual = {p.name: file_sha256(p) for p in [bundle.index_path, *bundle.data_files()] if p.is_file()}
    return [f"{file} has sha256 {actual.get(file, 'missing')[:16]}..., the card expects {sha[:16]}..."
            for file, sha in sorted(expected.items()) if actual.get(file) != sha]


def release_name(bundle: TensorBundle) -> str:
    """The registered name a bundle's conversion serves (reads the index only; clear error otherwise)."""
    from .germain2019 import kind_of

    return "feature-loss-can" if kind_of(bundle) == "can" else "feature-loss-net-germain2019"


def install_converted(src, cards_root=None) -> Converted:
    """Convert the release at ``src`` into its card folder ``cards_root/NAME`` (default ``hub_cards/``).

    The card folder's committed ``config.json`` says which weights the conversion must give
    (``weights_sha256``): they are converted into a temporary folder beside it, checked, and
    only then moved in under a temporary name and renamed; ``config.json`` and ``README.md`` are
    never written. When the card already holds exactly those weights and the source files are
    the ones it records, nothing is converted (status "verified").
    """
    bundle = TensorBundle(src)
    name = release_name(bundle)
    card = Path(cards_root or CARDS_ROOT) / name
    config = _committed_config(card)
    expected = config.get("weights_sha256")
    if not expected:
        raise ConvertError(f"{card / 'config.json'} records no weights_sha256: it cannot say whether a "
                           "conversion is right; restore it from the repository")
    weights = card / WEIGHTS_NAME
    differences = _source_differences(bundle, config)
    if not differences and weights.is_file() and file_sha256(weights) == expected:
        return Converted(name, card, expected, "verified", [weights])
    with tempfile.TemporaryDirectory(prefix=f".{name}-convert-", dir=card.parent) as scratch:
        convert_bundle(bundle.prefix, scratch)
        produced = Path(scratch) / WEIGHTS_NAME
        actual = file_sha256(produced)
        if actual != expected:
            why = ("; ".join(differences) if differences else
                   "the source files are the ones the card records, so the converter or its libraries differ")
            raise ConvertError(f"converting {bundle.prefix} gives weights with sha256 {actual[:16]}... but "
                               f"{card / 'config.json'} expects {expected[:16]}... ({why}); {card} is left as it was")
        _make_readable(produced)
        staged = card / f".{WEIGHTS_NAME}.partial"
        shutil.move(str(produced), staged)  # a rename: the scratch folder lies beside the card folder
        os.replace(staged, weights)
    return Converted(name, card, actual, "installed", [weights])


def convert_into(src, out, overwrite: bool = False) -> Converted:
    """Write the complete card folder (config.json, model.safetensors, README.md) of ``src`` into ``out``.

    ``out`` must be absent or empty, or hold this model's card (then only with ``overwrite``); a
    folder holding another model's config.json is never written into."""
    bundle = TensorBundle(src)
    name = release_name(bundle)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConvertError(f"{out} is a file; pass a folder for the card (config.json, model.safetensors, README.md)")
    present = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if (out / "config.json").is_file():
        try:
            other = json.loads((out / "config.json").read_text()).get("name")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            other = None
        if other != name:
            raise ConvertError(f"{out} holds the config.json of {other or 'another model'}, not {name}: "
                               "choose another --out folder (nothing was written)")
    if present and not overwrite:
        raise ConvertError(f"{out} is not empty ({', '.join(present[:4])}{' ...' if len(present) > 4 else ''}): "
                           "choose another --out folder, or pass --overwrite to replace the card's files")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-convert-", dir=out.parent) as scratch:
        convert_bundle(bundle.prefix, scratch)
        out.mkdir(exist_ok=True)
        files = []
        for produced in sorted(Path(scratch).iterdir()):
            _make_readable(produced)
            staged = out / f".{produced.name}.partial"
            shutil.move(str(produced), staged)
            os.replace(staged, out / produced.name)
            files.append(out / produced.name)
    sha = file_sha256(out / WEIGHTS_NAME)
    committed = CARDS_ROOT / name / "config.json"
    try:
        expected = json.loads(committed.read_text()).get("weights_sha256")
    except (OSError, ValueError):
        expected = None
    note = ("" if expected is None else f"the same as {committed} records" if expected == sha
            else f"NOT the {expected[:16]}... that {committed} records")
    return Converted(name, out, sha, "written", files, note)


def _make_readable(path: Path) -> None:
    """Temporary files are created private (0600); an installed card file has the usual mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
