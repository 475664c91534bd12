"""Which units a reconstruction runs on: all of them but those ``recon.exclude`` names."""
from __future__ import annotations

import re
from collections.abc import Sequence

from rdoq_plugins.config.errors import ConfigError


def select_units(units: Sequence[str], exclude: Sequence[str]) -> list[str]:
    """``units`` without those whose name fully matches a pattern of ``exclude``; a pattern that
    matches no unit is an error (a typo would otherwise reconstruct everything silently)."""
    for pattern in exclude:
        if not any(re.fullmatch(pattern, u) for u in units):
            shown = ", ".join(units[:6]) + (", ..." if len(units) > 6 else "")
            raise ConfigError("recon.exclude", "matches no reconstruction unit", pattern, shown)
    return [u for u in units if not any(re.fullmatch(p, u) for p in exclude)]
