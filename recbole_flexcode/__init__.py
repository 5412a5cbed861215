"""recbole_flexcode: generative recommendation with semantic IDs, as a RecBole plugin."""

from recbole_flexcode import compat as _compat

_compat.apply()

__version__ = "0.1.0"
