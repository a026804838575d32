"""Thread defaults for a shared machine, set before any OpenMP runtime loads.

OpenMP runtimes (libgomp, which LightGBM and scikit-learn's HistGradientBoosting load) read
their settings from the environment once, when the library is loaded. By default an idle
OpenMP thread spins for a while before it sleeps; when other processes hold the cores, the
spinning threads compete with the ones doing the work and a LightGBM fit on the flights data
took 31 s instead of 6 s. ``OMP_WAIT_POLICY=PASSIVE`` makes idle threads sleep at once: 11 s
on the same busy machine, about 15 % slower on a quiet one. ``mlsd/__init__.py`` imports this
module first, so the default holds whenever mlsd is imported before lightgbm or sklearn; a
value the user set is left alone. ``docs/threads-and-timing.md`` has the measurements.

>>> env = {"OMP_WAIT_POLICY": "ACTIVE"}
>>> apply_thread_defaults(env), env["OMP_WAIT_POLICY"]
({}, 'ACTIVE')
>>> apply_thread_defaults({})
{'OMP_WAIT_POLICY': 'PASSIVE'}
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

__all__ = ["THREAD_DEFAULTS", "apply_thread_defaults"]

THREAD_DEFAULTS: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE"}


def apply_thread_defaults(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set every default of :data:`THREAD_DEFAULTS` the environment does not set; return those set."""
    applied = {k: v for k, v in THREAD_DEFAULTS.items() if k not in environ}
    environ.update(applied)
    return applied


apply_thread_defaults()
