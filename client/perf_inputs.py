"""What a perf level sends: the input batch (random, safe, held-out samples or a file) and system shared memory."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zeroserve.client.connection import Client, validate_inputs
from zeroserve.errors import InputError
from zeroserve.spec import ModelSpec



def perf_inputs(spec: ModelSpec, batch_size: int, mode: str, *, input_data: Path | None = None,
                data_dir: Path | None = None, seed: int = 0, cast: bool = False,
                allow_nonfinite: bool = False) -> list[np.ndarray]:
    """The batch every request sends: random valid, zeros, real held-out samples, or a user's file.

    A file's values are checked as `client infer` checks them (`cast`, `allow_nonfinite`).
    """
    if input_data is not None:
        from zeroserve.client.infer import load_input_file

        arrays = validate_inputs(spec, load_input_file(spec, input_data), cast=cast, allow_nonfinite=allow_nonfinite)
        reps = -(-batch_size // len(arrays[0]))
        return [np.concatenate([a] * reps)[:batch_size] for a in arrays]
    if mode == "random":
        return spec.random_inputs(batch_size, np.random.default_rng(seed))
    if mode == "zero":
        # each input's safe value: zeros, except where zero is not valid (a lengths input gets 1)
        return spec.safe_inputs(batch_size, time=max(spec.seq_lengths or (1,)))
    if mode == "sample":
        from zeroserve.data import default_data_dir

        split = spec.load_data(Path(data_dir or default_data_dir()))
        n = len(split.test_inputs[0])
        idx = np.arange(batch_size) % n
        return [a[idx] for a in split.test_inputs]
    raise InputError(f"unknown --input {mode!r}; use random, zero or sample (or --input-data FILE)")


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
    def create(cls, clients: list[Client], wire_inputs: list[np.ndarray], output_nbytes: list[int],
               slots: int, tag: str) -> "SharedMemory":
        import tritonclient.utils.shared_memory as shm

        self = cls(clients=clients)
        try:
            offsets, pos = [], 0
            for a in wire_inputs:
                offsets.append((pos, a.nbytes))
                pos += a.nbytes
            name = f"zs_{tag}_in"
            handle = shm.create_shared_memory_region(name, f"/{name}", pos)
            self._track(handle, name, pos)
            for a, (off, _) in zip(wire_inputs, offsets):
                shm.set_shared_memory_region(handle, [a], offset=off)
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
            raise InputError(f"--shared-memory system: cannot create a region ({exc}); "
                             "check /dev/shm or use --shared-memory none") from None
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
