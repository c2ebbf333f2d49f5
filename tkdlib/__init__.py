"""tkdlib: teacher-guided one-shot pruning.

For your own model: ``tkdlib.prune``, ``tkdlib.retrain`` and ``tkdlib.Mask`` (see `tkdlib.api`).
"""

from tkdlib.api import prune, retrain
from tkdlib.masks import Mask

__all__ = ["Mask", "prune", "retrain"]
