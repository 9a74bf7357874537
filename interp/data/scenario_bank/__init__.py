"""The scenario bank's JSON files (read by :mod:`interp.data.scenarios`)."""
