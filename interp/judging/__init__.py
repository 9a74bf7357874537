"""Moved to :mod:`interp.text.judging`; this alias is kept for one release."""

import sys

from interp.text import judging as _moved

sys.modules[__name__] = _moved
