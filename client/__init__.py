"""The client stage: call, check and load-test the served models over tritonclient.

`connection` is the one layer over tritonclient; `infer`, `check` and `perf` sit on it.
"""

from zeroserve.client.check import check_model
from zeroserve.client.connection import AsyncClient, Client, Endpoint, resolve_endpoint
from zeroserve.client.perf import run_perf

__all__ = ["AsyncClient", "Client", "Endpoint", "check_model", "resolve_endpoint", "run_perf"]
