"""medattn: an explainability workbench for medical image classifiers."""

# Before anything can import torch: OpenMP reads its thread policy once, when torch loads.
from medattn import threads as _threads

_threads.apply()

__version__ = "0.1.0"
