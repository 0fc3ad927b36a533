"""The client stage: call, check and load-test the served models over tritonclient.

`connection` is the one layer over tritonclient; `infer`, `check` and `perf` sit on it. Names are
imported lazily so that load-generator worker processes start without importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AsyncClient": "connection",
    "Client": "connection",
    "Endpoint": "endpoints",
    "resolve_endpoint": "endpoints",
    "check_model": "check",
    "run_perf": "perf.run",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"zeroserve.client.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'zeroserve.client' has no attribute {name!r}")
