"""Moved to :mod:`interp.data.scenarios`; this alias (and ``python -m interp.scenarios``) is
kept for one release."""

import sys

from interp.data import scenarios as _moved

if __name__ == "__main__":
    raise SystemExit(_moved.main())
sys.modules[__name__] = _moved
