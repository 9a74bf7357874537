"""Moved to :mod:`interp.text.judging`; this alias is kept for one release.

The package and each of its modules are aliased (``interp.judging.rule`` is
``interp.text.judging.rule``), so no module is loaded twice (a second load would register
its judge twice).
"""

import importlib
import pkgutil
import sys

from interp.text import judging as _moved

for _info in pkgutil.iter_modules(_moved.__path__):
    sys.modules[f"{__name__}.{_info.name}"] = importlib.import_module(
        f"{_moved.__name__}.{_info.name}"
    )
sys.modules[__name__] = _moved
