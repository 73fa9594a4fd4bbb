"""Moved to :mod:`kdsr_model.data.classic` (with the other degradations); this name still works."""
import warnings

from .data.classic import *  # noqa: F401,F403

warnings.warn('kdsr_model.classic_degrade moved to kdsr_model.data.classic', DeprecationWarning, stacklevel=2)
