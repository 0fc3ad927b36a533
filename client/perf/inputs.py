"""What a perf level sends: the input batch (random, safe, held-out samples or a file) and system shared memory."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zeroserve.client.connection import Client
from zeroserve.client.input_files import perf_analyzer_entries, read_input_file
from zeroserve.client.model import Target, generated_inputs, spec_time, validate
from zeroserve.errors import InputError


def perf_inputs(
    target: Target,
    batch_size: int,
    mode: str,
    *,
    input_data: Path | None = None,
    data_dir: Path | None = None,
    seed: int = 0,
    shapes: dict[str, tuple[int, ...]] | None = None,
    cast: bool = False,
    allow_nonfinite: bool = False,
) -> list[np.ndarray]:
    """The batch every request sends: random valid, zeros, real held-out samples, or a user's file.

    A file's values are checked as `client infer` checks them (`cast`, `allow_nonfinite`).

    A server-known model (no registry spec) gets random or zero data of its datatypes, its dynamic
    dims fixed by `shapes` (--shape); a registry model's dynamic axis may be fixed by --shape too.
    """
    shapes = shapes or {}
    if input_data is not None:
        arrays = validate(
            target,
            read_input_file(target, input_data, shapes, rows=batch_size),
            cast=cast,
            allow_nonfinite=allow_nonfinite,
        )
        if not target.batched:
            return arrays
        reps = -(-batch_size // len(arrays[0]))
        return [np.concatenate([a] * reps)[:batch_size] for a in arrays]
    spec = target.spec
    if spec is None:
        return generated_inputs(target, batch_size, mode, shapes, seed)
    time = spec_time(target, shapes)
    if mode == "random":
        return spec.random_inputs(batch_size, np.random.default_rng(seed), time=time)
    if mode == "zero":
        # each input's safe value: zeros, except where zero is not valid (a lengths input gets 1)
        return spec.safe_inputs(batch_size, time=time or max(spec.seq_lengths or (1,)))
    if mode == "sample":
        from zeroserve.data.readers import default_data_dir

        split = spec.load_data(Path(data_dir or default_data_dir()))
        n = len(split.test_inputs[0])
        idx = np.arange(batch_size) % n
        return [a[idx] for a in split.test_inputs]
    raise InputError(f"unknown --input {mode!r}; use random, zero or sample (or --input-data FILE)")


MAX_VARIANTS = 64  # at most this many distinct requests per level from a perf_analyzer input-data file


def input_variants(
    target: Target,
    input_data: Path | None,
    batch_size: int,
    shapes: dict[str, tuple[int, ...]] | None = None,
    *,
    cast: bool = False,
    allow_nonfinite: bool = False,
) -> list[tuple[int, list[np.ndarray]]]:
    """The requests after the first that a perf_analyzer input-data file makes, as (first entry, arrays).

    perf_analyzer sends its entries round-robin; here request j holds entries j*b .. j*b+b-1 (cycled,
    b = the batch size, 1 for a model that does not batch), until every entry has been sent once
    (at most MAX_VARIANTS requests). Empty for any other input.
    """
    import math

    entries = perf_analyzer_entries(input_data) if input_data is not None else None
    per = batch_size if target.batched else 1
    if entries is None or entries <= per and entries % per == 0:
        return []
    count = min(entries // math.gcd(entries, per), MAX_VARIANTS)
    return [
        (
            j * per,
            validate(
                target,
                read_input_file(target, input_data, shapes, rows=per, start=j * per),
                cast=cast,
                allow_nonfinite=allow_nonfinite,
            ),
        )
        for j in range(1, count)
    ]


# ---------------------------------------------------------------- shared memory


@dataclass
class SharedMemory:
    """Triton system shared memory for inputs (one region, read by every request) and outputs (one per slot)."""

    regions: list = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    clients: list[Client] = field(default_factory=list)
    input_region: tuple[str, list[tuple[int, int]]] | None = None
    output_regions: list[tuple[str, list[tuple[int, int]]]] = field(default_factory=list)

    @classmethod
    def create(
        cls, clients: list[Client], wire_inputs: list[np.ndarray], output_nbytes: list[int], slots: int, tag: str
    ) -> SharedMemory:
        import tritonclient.utils.shared_memory as shm
        from tritonclient.utils import serialize_byte_tensor

        self = cls(clients=clients)
        try:
            offsets, pos = [], 0
            for a in wire_inputs:
                size = len(serialize_byte_tensor(a).item()) if a.dtype == object else a.nbytes  # BYTES: length-prefixed
                offsets.append((pos, size))
                pos += size
            name = f"zs_{tag}_in"
            handle = shm.create_shared_memory_region(name, f"/{name}", pos)
            self._track(handle, name, pos)
            for a, (off, _) in zip(wire_inputs, offsets):
                # tritonclient takes BYTES already serialized (a 0-d object array holding the bytes)
                shm.set_shared_memory_region(handle, [serialize_byte_tensor(a) if a.dtype == object else a], offset=off)
            self.input_region = (name, offsets)
            total = sum(output_nbytes)
            for i in range(slots):
                name = f"zs_{tag}_out{i}"
                handle = shm.create_shared_memory_region(name, f"/{name}", total)
                self._track(handle, name, total)
                offs, pos = [], 0
                for n in output_nbytes:
                    offs.append((pos, n))
                    pos += n
                self.output_regions.append((name, offs))
        except shm.SharedMemoryException as exc:
            self.close()
            raise InputError(
                f"--shared-memory system: cannot create a region ({exc}); check /dev/shm or use --shared-memory none"
            ) from None
        except Exception:
            self.close()
            raise
        return self

    def _track(self, handle, name: str, size: int) -> None:
        self.regions.append(handle)
        self.names.append(name)
        for c in self.clients:
            c.register_system_shared_memory(name, f"/{name}", size)

    def close(self) -> None:
        """Unregister from every server (best effort: it may be gone) and free the regions."""
        import tritonclient.utils.shared_memory as shm

        for c in self.clients:
            for name in self.names:
                with contextlib.suppress(Exception):
                    c.unregister_system_shared_memory(name)
        for handle in self.regions:
            with contextlib.suppress(Exception):
                shm.destroy_shared_memory_region(handle)
        self.regions, self.names = [], []
