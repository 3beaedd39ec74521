"""Model names -> (module class, model card folder, Hugging Face Hub repository).

Registration is a decorator on the class that implements the model, so a new architecture is
one file in ``zoo/models`` and nothing else changes: no global URL tables, no lists to edit.
The same class may be registered under several names (``can-l1`` and ``can-l2`` share a
network and differ by their card's config).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

#: The repository checkout (or installed tree) that holds ``hub_cards/``.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class UnknownModelError(KeyError):
    """A model name that is neither registered, nor a folder, nor a Hub repository id."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


@dataclass(frozen=True)
class ModelEntry:
    name: str
    cls: type
    card: str  # folder relative to the project root, e.g. "hub_cards/wiener"
    hub_repo: str  # "ORG/NAME" on the Hugging Face Hub
    summary: str = ""
    paper: str = ""
    trained_on: str = ""

    @property
    def card_path(self) -> Path:
        return PROJECT_ROOT / self.card


_REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, *, card: str, hub_repo: str, summary: str = "", paper: str = "", trained_on: str = ""):
    """Class decorator: ``@zoo.register("name", card="hub_cards/name", hub_repo="ORG/name")``."""

    def decorate(cls):
        from .module import DenoiserModule

        if not (isinstance(cls, type) and issubclass(cls, DenoiserModule)):
            raise TypeError(f"@register({name!r}) must decorate a DenoiserModule subclass, not {cls!r}")
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"model name {name!r} is already registered by {_REGISTRY[name].cls.__name__}")
        _REGISTRY[name] = ModelEntry(name, cls, card, hub_repo, summary, paper, trained_on)
        return cls

    return decorate


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(unknown_name_message(name)) from None


def unknown_name_message(name: str) -> str:
    known = sorted(_REGISTRY)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return (f"unknown model '{name}'.{hint} Known models: {', '.join(known)}. "
            "You can also pass a local folder with config.json + model.safetensors, or a Hub repo id ORG/NAME.")


def is_registered(name: str) -> bool:
    return name in _REGISTRY


def entries() -> list[ModelEntry]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)
