"""Between a deployed config and a candidate: read one from the other, write one into the other.

The same `DeployedModel` transform serves the private server's candidate folders (tune/runner.py)
and `--apply`'s canonical config (tune/apply.py), so what was measured is what is written.
"""

from __future__ import annotations

from dataclasses import replace

from zeroserve import engine
from zeroserve import formats as F
from zeroserve.deploy.config import DeployedModel
from zeroserve.triton import machine
from zeroserve.tune.search import Candidate


def backend_of(model: DeployedModel) -> F.Backend:
    backend = F.for_backend(model.backend, model.platform)
    if backend is None:  # read_deployed/served_by refuse these before tune gets here
        raise ValueError(f"backend {model.backend!r} is not one zeroserve serves")
    return backend


def threads_of(model: DeployedModel) -> int:
    """The config's intra-op threads (its backend's parameter), 1 when unset (the runtime copy's default)."""
    try:
        return max(1, int(model.parameters.get(backend_of(model).threads_parameter, "1")))
    except ValueError:
        return 1


def candidate_of(model: DeployedModel, fmt: str) -> Candidate:
    """The deployed config as a candidate (no dynamic batching reads as a 0 µs delay)."""
    return Candidate(
        fmt=fmt,
        instances=model.instance_count,
        max_batch_size=model.max_batch_size,
        prefer_max=bool(model.preferred_batch_sizes) and model.preferred_batch_sizes == (model.max_batch_size,),
        queue_delay_us=model.max_queue_delay_us or 0,
        threads=threads_of(model),
    )


def config_for(model: DeployedModel, c: Candidate, name: str | None = None) -> DeployedModel:
    """`model` with the candidate's settings (and another Triton name for a candidate folder)."""
    backend = backend_of(model)
    return replace(
        model,
        name=name or model.name,
        instance_count=c.instances,
        max_batch_size=c.max_batch_size,
        preferred_batch_sizes=c.preferred_batch_sizes,
        max_queue_delay_us=c.queue_delay_us,
        parameters={**model.parameters, backend.threads_parameter: str(c.threads)},
    )


def tuned_on(fmt: str, triton: str | None = None) -> dict:
    """Where a measurement was made: settings tuned on one machine and engine are not the answer for another.

    The private server is the embedded engine, running `fmt` with its runtime in the Python backend.
    """
    return machine.measured_on(engine.embedded(F.get(fmt).runtime, machine.gpu_names(), triton)).to_json()
