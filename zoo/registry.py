"""Model names -> (module class, model card folder, Hugging Face Hub repository).

Registration is a decorator on the class that implements the model, so a new architecture is
one file in ``zoo/models`` and nothing else changes: no global URL tables, no lists to edit.
The same class may be registered under several names (``can-l1`` and ``can-l2`` share a
network and differ by their card's config).

Listing the models must not cost a torch import (``zoo list`` starts in well under 2 s): the
``@register(...)`` decorators of the built-in models are read from the source of ``zoo/models``
(literal arguments and module-level string constants only) and each entry imports its class on
first use. Importing ``zoo.models`` registers the same entries for real; a decorator whose
arguments cannot be read statically makes the registry import ``zoo.models`` instead, so the
list is never wrong, only slower.
"""
from __future__ import annotations

import ast
import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path

from .paths import PROJECT_ROOT, card_folder  # noqa: E402,F401  (re-exported: zoo.registry.PROJECT_ROOT)
MODELS_PACKAGE = "zoo.models"
_MODELS_DIR = Path(__file__).resolve().parent / "models"


class UnknownModelError(KeyError):
    """A model name that is neither registered, nor a folder, nor a Hub repository id."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


@dataclass(frozen=True)
class ModelEntry:
    name: str
    target: object  # the DenoiserModule subclass, or "module:Class" until it is first needed
    card: str  # folder relative to the project root, e.g. "hub_cards/wiener"
    hub_repo: str  # "ORG/NAME" on the Hugging Face Hub
    summary: str = ""
    paper: str = ""
    trained_on: str = ""

    @property
    def cls(self) -> type:
        """The class that implements the model (imports its module, and torch, when needed)."""
        if isinstance(self.target, str):
            module, _, qualname = self.target.partition(":")
            importlib.import_module(module)  # its decorators replace this entry by the real one
            found = _REGISTRY.get(self.name)
            if found is not None and not isinstance(found.target, str):
                return found.target
            value = importlib.import_module(module)
            for part in qualname.split("."):
                value = getattr(value, part)
            return value
        return self.target

    @property
    def card_path(self) -> Path:
        return card_folder(self.card)


_REGISTRY: dict[str, ModelEntry] = {}
_BUILTINS_DECLARED = False


def _target_of(cls) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def register(name: str, *, card: str, hub_repo: str, summary: str = "", paper: str = "", trained_on: str = ""):
    """Class decorator: ``@zoo.register("name", card="hub_cards/name", hub_repo="ORG/name")``."""

    def decorate(cls):
        # by name, not by import: the contract (zoo.module) sits below the registry and the Hub
        if not (isinstance(cls, type) and any(base.__module__ == "zoo.module" and base.__name__ == "DenoiserModule"
                                              for base in cls.__mro__)):
            raise TypeError(f"@register({name!r}) must decorate a DenoiserModule subclass, not {cls!r}")
        known = _REGISTRY.get(name)
        if known is not None:
            same = known.target == _target_of(cls) if isinstance(known.target, str) else known.target is cls
            if not same:
                other = known.target.rsplit(":", 1)[-1] if isinstance(known.target, str) else known.target.__name__
                raise ValueError(f"model name {name!r} is already registered by {other}")
        _REGISTRY[name] = ModelEntry(name, cls, card, hub_repo, summary, paper, trained_on)
        return cls

    return decorate


# ---- the built-in models, read without importing them -----------------------------------------


class _NotStatic(Exception):
    """A decorator argument that is not a literal or a module-level string constant."""


def _module_constants(tree: ast.Module, module: str, seen: set) -> dict:
    """Module-level ``NAME = <string expression>`` and ``from .x import NAME`` of one model file."""
    constants: dict = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = _evaluate(node.value, constants)
            except _NotStatic:
                pass
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            source = _MODELS_DIR / f"{node.module}.py"
            if source.is_file() and node.module not in seen:
                other = _module_constants(ast.parse(source.read_text()), node.module, seen | {module})
                for alias in node.names:
                    if alias.name in other:
                        constants[alias.asname or alias.name] = other[alias.name]
    return constants


def _evaluate(node: ast.AST, constants: dict):
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float)):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _evaluate(node.left, constants), _evaluate(node.right, constants)
        if isinstance(left, str) and isinstance(right, str):
            return left + right
    raise _NotStatic(ast.dump(node)[:80])


def builtin_declarations() -> list[ModelEntry]:
    """The entries that importing ``zoo.models`` would register, read from its source files."""
    declared = []
    for source in sorted(_MODELS_DIR.glob("*.py")):
        text = source.read_text()
        if "register(" not in text or source.name == "__init__.py":
            continue
        tree = ast.parse(text, filename=str(source))
        module = f"{MODELS_PACKAGE}.{source.stem}"
        constants = _module_constants(tree, source.stem, set())
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            for decorator in node.decorator_list:
                func = decorator.func if isinstance(decorator, ast.Call) else None
                if not (isinstance(func, ast.Name) and func.id == "register"
                        or isinstance(func, ast.Attribute) and func.attr == "register"):
                    continue
                if len(decorator.args) != 1 or any(k.arg is None for k in decorator.keywords):
                    raise _NotStatic(f"{source.name}: @register of {node.name}")
                name = _evaluate(decorator.args[0], constants)
                fields = {k.arg: _evaluate(k.value, constants) for k in decorator.keywords}
                declared.append(ModelEntry(name, f"{module}:{node.name}", **fields))
    return declared


def _declare_builtins() -> None:
    """Make the built-in models known, without importing them where their source allows."""
    global _BUILTINS_DECLARED
    if _BUILTINS_DECLARED:
        return
    _BUILTINS_DECLARED = True
    try:
        declared = builtin_declarations()
    except (_NotStatic, OSError, SyntaxError, TypeError):
        importlib.import_module(MODELS_PACKAGE)  # the slow, always-right way
        return
    for entry in declared:
        _REGISTRY.setdefault(entry.name, entry)


# ---- queries ----------------------------------------------------------------------------------


def get_entry(name: str) -> ModelEntry:
    _declare_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(unknown_name_message(name)) from None


def find_by_hub_repo(repo_id: str) -> ModelEntry | None:
    """The registered model published as ``repo_id`` (``zoo-denoise/wiener``), if any."""
    _declare_builtins()
    return next((e for e in _REGISTRY.values() if e.hub_repo.lower() == str(repo_id).lower()), None)


def unknown_name_message(name: str) -> str:
    _declare_builtins()
    known = sorted(_REGISTRY)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return (f"unknown model '{name}'.{hint} Known models: {', '.join(known)}. "
            "You can also pass a local folder with config.json + model.safetensors, or a Hub repo id ORG/NAME.")


def is_registered(name: str) -> bool:
    _declare_builtins()
    return name in _REGISTRY


def entries() -> list[ModelEntry]:
    _declare_builtins()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def list_models() -> list[str]:
    """Registered model names, sorted."""
    _declare_builtins()
    return sorted(_REGISTRY)
