"""Moved to :mod:`interp.text.generation`; this alias is kept for one release."""

import sys

from interp.text import generation as _moved

sys.modules[__name__] = _moved
