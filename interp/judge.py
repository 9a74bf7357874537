"""Moved to :mod:`interp.text.judge` (``python -m interp.text.judge``); this alias (and
``python -m interp.judge``) is kept for one release."""

import sys

from interp.text import judge as _moved

if __name__ == "__main__":
    raise SystemExit(_moved.main())
sys.modules[__name__] = _moved
