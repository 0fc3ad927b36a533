"""`zeroserve client infer|check|perf`: parse, call one library function, print."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from zeroserve import formats as F
from zeroserve import registry
from zeroserve.app.cliutil import (
    ArtifactsOpt,
    DataDirOpt,
    JsonOpt,
    ModelFilesOpt,
    ModelsArg,
    choices,
    console,
    data_dir_in_use,
    err_console,
    handle_errors,
    port_callback,
    positive_seconds,
    print_json,
    skip_line,
)
from zeroserve.artifacts import DEFAULT_ARTIFACTS
from zeroserve.client.cli_views import check_table, jsonable, print_infer
from zeroserve.client.connection import DEFAULT_TIMEOUT_S, Client
from zeroserve.client.endpoints import PROTOCOLS, choose_protocol, protocols_meant, resolve_endpoint
from zeroserve.errors import CheckFailed, InputError

if TYPE_CHECKING:  # mypy sees the value each choice stands for; typer gets the choice Enum at run time
    Protocol = str
    Format = str
    Generate = str
else:
    Protocol = choices("Protocol", PROTOCOLS)
    Format = choices("Format", F.keys())
    Generate = choices("Generate", ("random", "zero"))

client_app = typer.Typer(name="client", help="Call, check and load-test the served models.", no_args_is_help=True)

HostOpt = Annotated[
    str | None, typer.Option("--host", help="Server host (default: the running server's, else 127.0.0.1).")
]
HttpPortOpt = Annotated[
    int | None,
    typer.Option(
        "--http-port", help="HTTP port (default: the running server's state file, else 8000).", callback=port_callback()
    ),
]
GrpcPortOpt = Annotated[
    int | None,
    typer.Option(
        "--grpc-port", help="gRPC port (default: the running server's state file, else 8001).", callback=port_callback()
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout",
        help="Seconds (> 0) before a call to the server gives up (exit 3, saying it timed out).",
        callback=positive_seconds,
    ),
]
CastOpt = Annotated[
    bool,
    typer.Option(
        "--cast",
        help="Convert input values the model's dtypes do not hold exactly "
        "(float64 rounded to float32, fractions truncated for integer inputs, integers "
        "saturated); without it such an input is refused (exit 2).",
    ),
]
NonfiniteOpt = Annotated[
    bool,
    typer.Option(
        "--allow-nonfinite", help="Send NaN and infinite input values; without it such an input is refused (exit 2)."
    ),
]
FormatOpt = Annotated[Format, typer.Option("--format", help="Served format.")]
OptFormatOpt = Annotated[
    Format | None, typer.Option("--format", help=f"Served format of a registry name (default {F.DEFAULT_FORMAT}).")
]
ShapeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--shape",
        help="NAME:D1,D2 fixes an input's dynamic "
        "dims (batch axis excluded), as perf_analyzer's --shape; repeat for several inputs.",
    ),
]
ProtocolOpt = Annotated[
    Protocol | None,
    typer.Option(
        "--protocol",
        help="Wire protocol (KServe v2); default grpc, or http when only --http-port is given.",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(client_app)


# ---------------------------------------------------------------- infer


@client_app.command("infer")
@handle_errors
def infer_cmd(
    model: Annotated[
        str,
        typer.Argument(help="A registry name, or any model the server serves (its Triton name).", show_default=False),
    ],
    input_file: Annotated[
        Path | None,
        typer.Option(
            "--input",
            "--input-data",
            help="Input tensors: .npy "
            "(single-input models), .npz or .json keyed by input name (batch axis included), or "
            'perf_analyzer\'s input-data JSON ({"data": [...]}, one row per entry).',
        ),
    ] = None,
    generate: Annotated[
        Generate | None,
        typer.Option(
            "--generate",
            help="Send random or zero data of the served datatypes (with --shape for dynamic dims, --batch-size rows).",
        ),
    ] = None,
    shape: ShapeOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Rows of --generate data.")] = 1,
    sample: Annotated[
        int | None,
        typer.Option(
            "--samples",
            "--sample",
            metavar="N",
            help="A count: send the first N real held-out rows (N >= 1). For one row by its position use --row.",
        ),
    ] = None,
    row: Annotated[
        list[int] | None,
        typer.Option(
            "--row",
            metavar="I",
            help="An index: send the real held-out "
            "row at 0-based index I (repeat for several, sent in the order given).",
        ),
    ] = None,
    text: Annotated[
        str | None,
        typer.Option(
            "--text", help="name_gru: a name (several: comma-separated); hello_rnn: characters of h, i, e, l, o."
        ),
    ] = None,
    image: Annotated[
        Path | None, typer.Option("--image", help="Image models: a picture, converted to 28x28 grayscale in [0, 1].")
    ] = None,
    invert: Annotated[
        bool,
        typer.Option("--invert", help="With --image: invert a dark-on-light drawing (MNIST digits are light on dark)."),
    ] = False,
    cast: CastOpt = False,
    allow_nonfinite: NonfiniteOpt = False,
    protocol: ProtocolOpt = None,
    fmt: OptFormatOpt = None,
    host: HostOpt = None,
    http_port: HttpPortOpt = None,
    grpc_port: GrpcPortOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
    data_dir: DataDirOpt = None,
    model_files: ModelFilesOpt = None,
    as_json: JsonOpt = False,
):
    """Send one request to a served model and print its outputs (and, for a registry model, what they mean).

    A registry name is served as `<name>_<format>`; any other name is looked up on the server and its
    inputs come from the server's config (`--generate random|zero`, `--shape`, or a file).
    """
    from zeroserve.client.infer import check_sample_choice, image_inputs, run_infer_requests, sample_inputs, text_inputs
    from zeroserve.client.input_files import check_validation_data, read_input_requests
    from zeroserve.client.model import parse_shapes, resolve
    from zeroserve.client.perf.inputs import perf_inputs

    shapes = parse_shapes(shape)
    given = [
        n
        for n, v in (
            ("--input", input_file),
            ("--generate", generate),
            ("--samples", sample),
            ("--row", row or None),
            ("--text", text),
            ("--image", image),
        )
        if v is not None
    ]
    if len(given) != 1:
        raise InputError(
            "give exactly one of --input, --generate, --samples, --row, --text, --image"
            + (f" (got {', '.join(given)})" if given else "")
        )
    generate = None if generate is None else str(generate)
    if sample is not None or row:
        check_sample_choice(sample, row)  # before reaching the server: a count of 0 is a usage error
    protocol = choose_protocol(protocol, http_port, grpc_port)
    with Client(resolve_endpoint(host, http_port, grpc_port, (protocol,)), protocol, timeout) as client:
        tgt = resolve(model, client, fmt, model_files)
        spec = tgt.spec
        if spec is None and (sample is not None or row or text is not None or image is not None):
            raise InputError(
                f"{given[0]} needs a registry model; {model} is known only from the server: use "
                "--input FILE or --generate random|zero"
            )
        target = None
        if input_file is not None:
            requests = read_input_requests(tgt, input_file, shapes)  # one per shape run of perf_analyzer entries
        elif generate is not None:
            if batch_size < 1:
                raise InputError("--batch-size must be at least 1")
            arrays = perf_inputs(tgt, batch_size, str(generate), shapes=shapes)  # as perf's --input random|zero
        elif sample is not None or row:
            arrays, target = sample_inputs(spec, data_dir_in_use(data_dir, [spec]), sample, row)
        elif text is not None:
            arrays = text_inputs(spec, text)
        else:
            arrays = image_inputs(spec, image, invert)
        if input_file is None:
            requests = [arrays]
        result = run_infer_requests(tgt, client, requests, cast=cast, allow_nonfinite=allow_nonfinite)
    result["validated"] = check_validation_data(tgt, input_file, list(result["outputs"].values()))
    if as_json:
        print_json(
            {
                **result,
                "outputs": {k: jsonable(v) for k, v in result["outputs"].items()},
                **({"target": np.asarray(target).tolist()} if target is not None else {}),
            }
        )
        return
    print_infer(result, protocol, spec, target, input_file)


# ---------------------------------------------------------------- check


@client_app.command("check")
@handle_errors
def check_cmd(
    models: ModelsArg,
    protocol: Annotated[
        Protocol | None,
        typer.Option(
            "--protocol",
            help="Only this protocol (default both; "
            "only HTTP when only --http-port is given, only gRPC when only --grpc-port).",
        ),
    ] = None,
    fmt: Annotated[
        Format | None, typer.Option("--format", help="Only this format (default: every primary format).")
    ] = None,
    atol: Annotated[float | None, typer.Option("--atol", help="Absolute tolerance (default: export's, 1e-5).")] = None,
    rtol: Annotated[float | None, typer.Option("--rtol", help="Relative tolerance (default: export's, 1e-4).")] = None,
    host: HostOpt = None,
    http_port: HttpPortOpt = None,
    grpc_port: GrpcPortOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
    artifacts: ArtifactsOpt = DEFAULT_ARTIFACTS,
    data_dir: DataDirOpt = None,
    model_files: ModelFilesOpt = None,
    as_json: JsonOpt = False,
):
    """Compare every served output on the held-out set with eager PyTorch from the checkpoint.

    Passes when every element is within atol + rtol*|eager| and top-1 agrees 100%; exits 1 otherwise.
    A served variant (<model>_onnx_int8, ...) is held to the variant rule its export recorded instead:
    held-out metric within the allowed drop of eager's and top-1 agreement at least the minimum.
    Without --format: the primary formats and every variant the server serves; a served name
    (cnn_mnist_onnx_int8) checks that one. A GPU-only variant (fp16) on a server without a GPU is skipped.
    """
    from zeroserve.client.check import check_model
    from zeroserve.records.check import CheckRecord, CheckSkip, ModelCheck

    protocols = protocols_meant(protocol, http_port, grpc_port)
    models, named = _triton_names(models, model_files)
    specs, explicit = registry.select(models, model_files)
    endpoint = resolve_endpoint(host, http_port, grpc_port, protocols)
    for p in protocols:  # fail fast (exit 3) before rebuilding data sets and eager references
        with Client(endpoint, p, timeout) as client:
            client.live()
    data_dir = data_dir_in_use(data_dir, specs)
    results: list[ModelCheck] = []
    skipped: list[CheckSkip] = []
    for spec in specs:
        try:
            spinner = contextlib.nullcontext() if as_json else err_console.status(f"checking {spec.name}")
            with spinner:
                # None: the primary formats and the variants the server serves
                formats = (str(fmt),) if fmt else tuple(named.get(spec.name, ())) or None
                res = check_model(
                    spec,
                    endpoint,
                    artifacts,
                    data_dir,
                    protocols=protocols,
                    formats=formats,
                    atol=atol,
                    rtol=rtol,
                    timeout=timeout,
                    skip_unserved=not explicit,
                )
        except InputError as exc:
            if explicit:
                raise
            reason = str(exc).removeprefix(f"{spec.name}: ")
            skipped.append(CheckSkip(model=spec.name, reason=reason))
            if not as_json:
                skip_line(spec.name, reason)
            continue
        results.append(res)
        skipped += [CheckSkip(model=f"{s.triton_model} ({s.protocol})", reason=s.reason) for s in res.skipped]
    rows = [r for res in results for r in res.rows]
    failed = [r for r in rows if r.status != "PASS"]
    if as_json:
        report = CheckRecord(status="FAIL" if failed or not rows else "PASS", models=results, skipped=skipped)
        print_json(report.to_json())
    else:
        check_table(rows, skipped)
        for res in results:
            console.print(f"{res.model}: compared on {res.data}", highlight=False, soft_wrap=True)
        for name, rule in dict((r.triton_model, r.rule) for r in rows if r.failed_rules is not None).items():
            console.print(f"{name}: variant rule: {rule}", highlight=False, soft_wrap=True)
    if not rows:
        raise CheckFailed(
            "nothing was checked: "
            + (
                f"{skipped[0].reason} ({len(skipped)} skipped)"
                if skipped
                else "no served model with a checkpoint and data"
            )
        )
    if failed:
        names = ", ".join(sorted({f"{r.triton_model}/{r.protocol}" for r in failed}))
        raise CheckFailed(f"{len(failed)} of {len(rows)} served model checks failed: {names}")


def _triton_names(models: list[str], model_files) -> tuple[list[str], dict[str, list[str]]]:
    """Served names (`cnn_mnist_onnx_int8`) among MODEL arguments as (registry names, {model: formats})."""
    names: list[str] = []
    named: dict[str, list[str]] = {}
    for part in (p for m in models or [] for p in m.split(",") if p):
        split = F.split_triton_name(part)
        if (
            part != "all"
            and part not in registry.models(model_files)
            and split
            and split[0] in registry.models(model_files)
        ):
            names.append(split[0])
            named.setdefault(split[0], []).append(split[1].key)
        else:
            names.append(part)
    return names, named


def _register_perf() -> None:
    from zeroserve.client.perf import cli as perf_command

    variant = Annotated[
        str | None,
        typer.Option(
            "--variant",
            help=f"Load-test a served variant: {', '.join(F.VARIANTS)} (its Triton model <model>_<format>).",
            show_default=False,
        ),
    ]
    shared = dict(
        fmt=OptFormatOpt,
        variant=variant,
        host=HostOpt,
        http_port=HttpPortOpt,
        grpc_port=GrpcPortOpt,
        timeout=TimeoutOpt,
        data_dir=DataDirOpt,
        model_files=ModelFilesOpt,
        as_json=JsonOpt,
    )
    perf_command.register(client_app, shared)


_register_perf()
