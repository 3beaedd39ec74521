"""Speech quality measures (the full torchmetrics ``Metric`` set lands with the evaluation issue)."""
from .quality import quality_scores

__all__ = ["quality_scores"]
