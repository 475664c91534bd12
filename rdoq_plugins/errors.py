"""The base of the errors that mean "fix your input": a file, a folder or a value the user gave.

The tools print such an error as one line (``error: <message>``) and exit with status 2, where any
other exception is a bug and keeps its traceback (:func:`rdoq_plugins.cli_flags.run_tool`). The
message names what is wrong (the path, the key) and fits on one line.
"""
from __future__ import annotations


class InputError(ValueError):
    """An input the user can fix (a file, a folder, a flag); the message names it."""


class NonFiniteError(RuntimeError):
    """A NaN or infinity in a weight, activation, scale or loss while the model is quantized; the
    message names the layer or unit where it appeared."""
