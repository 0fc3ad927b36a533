"""The format table: what each export format is, in one place.

A format is what `zeroserve export` writes (its artifact file under `artifacts/<model>/`), which
Triton backend serves it (and so the file name in the repository's version folder), the Triton
model name it gets (`<model>_<key>`), and what the embedded engine's `model.py` runs it with.
Every stage reads this table: export (which formats exist, their files), deploy (backend, file
in the repository), serve (backend -> runtime), status and the client (Triton names).

A new format is one `Format` entry here; a variant of an existing one names it as `base`
(for example `onnx_int8` with `base="onnx"`): it is served by the base's backend and runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from zeroserve.errors import InputError

if TYPE_CHECKING:
    from zeroserve.runtimes import Runtime


@dataclass(frozen=True)
class Backend:
    """A Triton backend a canonical repository model uses.

    Args:
        name: the config's `backend` (`onnxruntime`, `pytorch`).
        platforms: older `platform` spellings Triton also accepts for it.
        default_file: the file Triton loads from the version folder when the config names none.
        runtime: the runtime that runs the file (`onnx`, `torchscript`, `pt2`): its object
            (`zeroserve.runtimes`, `handler`) says how each stage exports, runs, deploys and lints it.
        threads_parameter: the config `parameters` key that sets the backend's intra-op threads.
        platform: the config's `platform` that selects this backend's mode (`torch_aoti`: the pytorch
            backend's PT2 packages); None when the backend name alone says it.
    """

    name: str
    platforms: tuple[str, ...]
    default_file: str
    runtime: str
    threads_parameter: str
    platform: str | None = None

    @property
    def key(self) -> str:
        return self.platform or self.name

    @property
    def handler(self) -> Runtime:
        from zeroserve import runtimes

        return runtimes.get(self.runtime)


ONNXRUNTIME = Backend("onnxruntime", ("onnxruntime_onnx",), "model.onnx", "onnx", "intra_op_thread_count")
PYTORCH = Backend("pytorch", ("pytorch_libtorch",), "model.pt", "torchscript", "INTRA_OP_THREAD_COUNT")
PYTORCH_AOTI = Backend("pytorch", (), "model.pt2", "pt2", "INTRA_OP_THREAD_COUNT", platform="torch_aoti")
BACKENDS: dict[str, Backend] = {b.key: b for b in (ONNXRUNTIME, PYTORCH, PYTORCH_AOTI)}


@dataclass(frozen=True)
class Format:
    """One export format.

    Args:
        key: the name on the command line, in `export.json`'s `formats` and in the Triton name.
        file: the artifact's file name under `artifacts/<model>/`.
        backend: the Triton backend that serves it.
        base: for a variant, the format it is made from (its gated artifact is the variant's input).
        summary: one line for `--help` and `zeroserve models`.
        variant: for a variant, its name on `zeroserve export --variant` (`int8`).
        gpu_only: only a GPU runs it as meant: deploy writes it KIND_GPU, the embedded engine
            on a machine without a GPU skips it, and export cannot measure it there (UNVERIFIED).
        default: exported (and deployed) when no --format is given; False for an opt-in format
            (pt2, whose compile takes ~30 s a model): deploy and the client take it when it was exported.
    """

    key: str
    file: str
    backend: Backend
    base: str | None = None
    summary: str = ""
    variant: str | None = None
    gpu_only: bool = False
    default: bool = True

    @property
    def runtime(self) -> str:
        return self.backend.runtime

    @property
    def handler(self) -> Runtime:
        """The runtime object: how this format is exported, run, deployed, linted and named on the wire."""
        return self.backend.handler

    def triton_name(self, model: str) -> str:
        return f"{model}_{self.key}"


FORMATS: dict[str, Format] = {
    f.key: f
    for f in (
        Format("onnx", "model.onnx", ONNXRUNTIME, summary="ONNX (torch.onnx), served by ONNX Runtime"),
        Format("torchscript", "model.pt", PYTORCH, summary="TorchScript (traced or scripted), served by libtorch"),
        Format(
            "pt2",
            "model.pt2",
            PYTORCH_AOTI,
            default=False,
            summary="PT2: torch.export compiled by AOTInductor for this machine (opt-in: ~30 s a model)",
        ),
        Format(
            "onnx_int8",
            "model.int8.onnx",
            ONNXRUNTIME,
            base="onnx",
            variant="int8",
            summary=(
                "int8: ONNX Runtime's static QDQ quantization (per-channel, signed), calibrated on training samples"
            ),
        ),
        Format(
            "onnx_int8dyn",
            "model.int8dyn.onnx",
            ONNXRUNTIME,
            base="onnx",
            variant="int8-dynamic",
            summary="int8-dynamic: ONNX Runtime's dynamic quantization (MatMul, Gather, Conv, LSTM, attention weights)",
        ),
        Format(
            "onnx_optimized",
            "model.optimized.onnx",
            ONNXRUNTIME,
            base="onnx",
            variant="optimized",
            summary="optimized: ONNX Runtime's offline graph optimisation at the portable basic level",
        ),
        Format(
            "onnx_fp16",
            "model.fp16.onnx",
            ONNXRUNTIME,
            base="onnx",
            variant="fp16",
            gpu_only=True,
            summary="fp16: float16 weights, float32 inputs and outputs; for GPU instances",
        ),
    )
}
VARIANTS: dict[str, Format] = {f.variant: f for f in FORMATS.values() if f.variant}

DEFAULT_FORMAT = "onnx"  # the one format of `client infer` and `client perf` when none is given


def get(key: str) -> Format:
    """The table entry for `key`, or InputError listing the known formats."""
    try:
        return FORMATS[key]
    except KeyError:
        raise InputError(f"unknown format {key!r}; use {', '.join(FORMATS)}") from None


def keys() -> tuple[str, ...]:
    """Every format key, in table order."""
    return tuple(FORMATS)


def primary() -> tuple[str, ...]:
    """The default formats exported from the checkpoint itself (no `base`): what export and deploy do by default."""
    return tuple(k for k, f in FORMATS.items() if f.base is None and f.default)


def opt_in() -> tuple[str, ...]:
    """Formats exported from the checkpoint only when asked for (`--format pt2`); deployed when exported."""
    return tuple(k for k, f in FORMATS.items() if f.base is None and not f.default)


def parse(formats: str | list[str] | tuple[str, ...] | None, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """`onnx,torchscript` (or a list of such) -> format keys in table order, or InputError naming the unknown ones."""
    if formats is None or formats == "" or formats == []:
        return default if default is not None else primary()
    items = formats.split(",") if isinstance(formats, str) else [p for f in formats for p in f.split(",")]
    items = [f.strip() for f in items if f.strip()]
    bad = [f for f in items if f not in FORMATS]
    if bad or not items:
        raise InputError(f"unknown format {', '.join(bad) or '(none)'}; use {', '.join(FORMATS)} (comma separated)")
    return tuple(f for f in FORMATS if f in items)


def for_backend(backend: str, platform: str | None = None) -> Backend | None:
    """The backend a config's `backend` and `platform` name, or None when zeroserve does not serve it.

    A platform that selects a mode (`torch_aoti`) wins; otherwise the backend name or an older platform
    spelling (`onnxruntime_onnx`, `pytorch_libtorch`) names the backend.
    """
    for b in BACKENDS.values():
        if b.platform and b.platform in (platform, backend):
            return b
    for b in BACKENDS.values():
        if b.platform is None and (backend == b.name or backend in b.platforms or (platform or "") in b.platforms):
            return b
    return None


def variants() -> tuple[str, ...]:
    """The format keys of the variants (those with a `base`), in table order."""
    return tuple(k for k, f in FORMATS.items() if f.base is not None)


def parse_variants(names: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """`--variant int8,fp16` (repeatable; a format key such as `onnx_int8` is accepted too) -> format keys."""
    if not names:
        return ()
    items = names.split(",") if isinstance(names, str) else [p for n in names for p in n.split(",")]
    items = [i.strip() for i in items if i.strip()]
    out, bad = [], []
    for item in items:
        fmt = VARIANTS.get(item) or (FORMATS[item] if item in FORMATS and FORMATS[item].base else None)
        if fmt is None:
            bad.append(item)
        elif fmt.key not in out:
            out.append(fmt.key)
    if bad or not out:
        raise InputError(f"unknown variant {', '.join(bad) or '(none)'}; use {', '.join(VARIANTS)}")
    return tuple(k for k in FORMATS if k in out)


def split_triton_name(triton_name: str) -> tuple[str, Format] | None:
    """`cnn_mnist_onnx_int8` -> ("cnn_mnist", the onnx_int8 format); the longest matching suffix wins."""
    for key in sorted(FORMATS, key=len, reverse=True):
        suffix = f"_{key}"
        if triton_name.endswith(suffix) and len(triton_name) > len(suffix):
            return triton_name[: -len(suffix)], FORMATS[key]
    return None
