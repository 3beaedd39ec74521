"""Where the checkout (or installed tree) lies: ``hub_cards/``, ``recipes/`` and the default data
folder are found from here. Its own module so that any layer (the data layer included) can ask
without importing the registry."""
from __future__ import annotations

from pathlib import Path

#: The repository checkout (or installed tree) that holds ``hub_cards/`` and ``recipes/``.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: The bundled model cards: ``hub_cards/`` of the checkout; in an installed wheel, the copy packed
#: inside the package (``zoo/hub_cards``, see pyproject.toml), since site-packages has no checkout.
CARDS_ROOT = PROJECT_ROOT / "hub_cards" if (PROJECT_ROOT / "hub_cards").is_dir() else Path(__file__).resolve().parent / "hub_cards"


def card_folder(card: str) -> Path:
    """A registry entry's card (``"hub_cards/NAME"``) as a folder of this installation."""
    parts = Path(card).parts
    return CARDS_ROOT.joinpath(*parts[1:]) if parts and parts[0] == "hub_cards" else PROJECT_ROOT / card


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
