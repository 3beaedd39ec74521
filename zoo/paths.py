"""Where the checkout (or installed tree) lies: ``hub_cards/``, ``recipes/`` and the default data
folder are found from here. Its own module so that any layer (the data layer included) can ask
without importing the registry."""
from __future__ import annotations

from pathlib import Path

#: The repository checkout (or installed tree) that holds ``hub_cards/`` and ``recipes/``.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def shown(path) -> str:
    """A path as a user would type it here: relative to the working directory when below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def recipe_name(path) -> str:
    """A recipe of this checkout as ``recipes/NAME/RECIPE.yaml``, wherever the command ran (what a
    card records); a recipe elsewhere as the user would type it."""
    try:
        return str(Path(path).resolve().relative_to(PROJECT_ROOT.resolve()))
    except ValueError:
        return shown(path)
