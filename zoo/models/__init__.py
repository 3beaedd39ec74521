"""One file per architecture family; importing this package registers every model."""
from . import can, wiener  # noqa: F401
