"""One file per architecture family; importing this package registers every model."""
from . import can, feature_loss, wiener  # noqa: F401
