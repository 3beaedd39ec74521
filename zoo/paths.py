"""Where the checkout (or installed tree) lies: ``hub_cards/``, ``recipes/`` and the default data
folder are found from here. Its own module so that any layer (the data layer included) can ask
without importing the registry."""
from __future__ import annotations

from pathlib import Path

#: The repository checkout (or installed tree) that holds ``hub_cards/`` and ``recipes/``.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
