"""perf_analyzer 2.60's whole command line: every flag mapped to a `client perf` field, accepted, or refused by name.

The mapped flags are the perf_analyzer spellings declared on the fields themselves
(client/perf/options.py, client/perf/command_line.py); this module lists the rest: flags accepted with no
change in meaning (`--async`), and flags refused with the one line that says why (exit 2). The
docs table (docs/perf.md) is `markdown_table()`; a unit test holds it and this list to perf_analyzer's
67 long options and its short ones.
"""

from __future__ import annotations

from dataclasses import dataclass

# perf_analyzer 2.60's long options (its command_line_parser.cc; `perf_analyzer` with no argument lists them,
# --enable-mpi apart) and its short-only options
LONG_OPTIONS = (
    "version", "bls-composing-models", "model-signature-name", "service-kind", "endpoint", "async", "sync",
    "measurement-interval", "concurrency-range", "periodic-concurrency-range", "session-concurrency",
    "request-period", "request-rate-range", "request-distribution", "request-intervals", "serial-sequences",
    "binary-search", "num-of-sequences", "latency-threshold", "max-threads", "stability-percentage", "max-trials",
    "percentile", "request-count", "warmup-request-count", "fixed-schedule", "input-data", "shared-memory",
    "output-shared-memory-size", "shape", "sequence-length", "sequence-length-variation", "sequence-id-range",
    "string-length", "string-data", "input-tensor-format", "output-tensor-format", "data-directory",
    "ssl-grpc-use-ssl", "ssl-grpc-root-certifications-file", "ssl-grpc-private-key-file",
    "ssl-grpc-certificate-chain-file", "ssl-https-verify-peer", "ssl-https-verify-host",
    "ssl-https-ca-certificates-file", "ssl-https-client-certificate-file", "ssl-https-client-certificate-type",
    "ssl-https-private-key-file", "ssl-https-private-key-type", "profile-export-file", "streaming",
    "grpc-compression-algorithm", "grpc-method", "trace-level", "trace-rate", "trace-count", "log-frequency",
    "collect-metrics", "metrics-url", "metrics-interval", "measurement-mode", "measurement-request-count",
    "triton-server-directory", "model-repository", "verbose-csv", "request-parameter", "enable-mpi",
)  # fmt: skip
SHORT_OPTIONS = ("-m", "-x", "-v", "-a", "-p", "-l", "-s", "-r", "-t", "-c", "-d", "-b", "-z", "-u", "-i", "-f", "-H")


@dataclass(frozen=True)
class Flag:
    """A perf_analyzer flag `client perf` takes without a field (accepted) or refuses, and why."""

    names: tuple[str, ...]
    takes_value: bool
    why: str

    @property
    def param(self) -> str:
        return "pa_" + self.names[-1].lstrip("-").replace("-", "_")


SEQUENCES = "zeroserve's generator sends no sequence ids (it loads stateless models)"
SSL = "zeroserve loads only loopback servers, over plain HTTP/gRPC: no TLS"
TRACE = "a server trace setting, not a load option: set tracing on the server (Triton's trace API)"
LLM = "an LLM/decoupled-model option; zeroserve's generator loads one-response models"

ACCEPTED = (
    Flag(("-a", "--async"), False, "no change: zeroserve keeps the level's requests in flight from an event loop"),
    Flag(("--sync",), False, "no change: the same closed loop, N requests in flight (zeroserve is asynchronous)"),
    Flag(("-v",), False, "no change: zeroserve prints each level's figures as it goes"),
)

REFUSED = (
    Flag(("--version",), False, "this is zeroserve: `zeroserve --version`"),
    Flag(("-x",), True, "zeroserve sends to the model's latest version (perf_analyzer's default without -x)"),
    Flag(("--bls-composing-models",), True, "zeroserve serves no BLS models to split statistics for"),
    Flag(("--model-signature-name",), True, "a TensorFlow Serving option (--service-kind tfserving)"),
    Flag(("--service-kind",), True, "zeroserve speaks Triton's KServe v2 only (perf_analyzer's default, triton)"),
    Flag(("--endpoint",), True, "an OpenAI-service option: zeroserve speaks KServe v2"),
    Flag(("--periodic-concurrency-range",), True, LLM),
    Flag(("--request-period",), True, LLM),
    Flag(("--session-concurrency",), True, SEQUENCES),
    Flag(("--serial-sequences",), False, SEQUENCES),
    Flag(("--num-of-sequences",), True, SEQUENCES),
    Flag(("--sequence-length",), True, SEQUENCES),
    Flag(("--sequence-length-variation",), True, SEQUENCES),
    Flag(("--sequence-id-range",), True, SEQUENCES),
    Flag(("--request-intervals",), True, "no custom schedules: use --request-rate-range with --request-distribution"),
    Flag(("--max-threads",), True, "zeroserve runs one event loop per load process: use --workers"),
    Flag(("--request-count",), True, "no fixed request total: use --measurement-mode count_windows"),
    Flag(("--warmup-request-count",), True, "zeroserve warms up for a time, not a count: use --warmup SECONDS"),
    Flag(("--fixed-schedule",), False, LLM),
    Flag(("-c",), True, "deprecated with -d in perf_analyzer: use --concurrency-range or --binary-search"),
    Flag(("-d",), False, "deprecated in perf_analyzer: use --concurrency-range or --binary-search"),
    Flag(("--string-length",), True, "random BYTES inputs come from the model's tensors: use --input-data FILE"),
    Flag(("--string-data",), True, "random BYTES inputs come from the model's tensors: use --input-data FILE"),
    Flag(("--input-tensor-format",), True, "zeroserve always sends binary tensors (perf_analyzer's default)"),
    Flag(("--output-tensor-format",), True, "zeroserve always asks for binary outputs (perf_analyzer's default)"),
    Flag(("--data-directory",), True, "deprecated in perf_analyzer: use --input-data FILE"),
    Flag(("--triton-server-directory",), True, "the C API service kind: zeroserve loads servers over the network"),
    Flag(("--model-repository",), True, "the C API service kind: zeroserve loads servers over the network"),
    *(
        Flag((f"--ssl-{name}",), True, SSL)
        for name in (
            "grpc-use-ssl",
            "grpc-root-certifications-file",
            "grpc-private-key-file",
            "grpc-certificate-chain-file",
            "https-verify-peer",
            "https-verify-host",
            "https-ca-certificates-file",
            "https-client-certificate-file",
            "https-client-certificate-type",
            "https-private-key-file",
            "https-private-key-type",
        )
    ),
    Flag(("--profile-export-file",), True, "perf_analyzer's profile JSON: use --json or --report for zeroserve's"),
    Flag(("-H",), True, "zeroserve's wire generator sends no extra HTTP headers"),
    Flag(("--grpc-compression-algorithm",), True, "zeroserve sends uncompressed gRPC (perf_analyzer's default)"),
    Flag(("--grpc-method",), True, "zeroserve calls KServe's ModelInfer (or ModelStreamInfer with --streaming)"),
    Flag(("--trace-level",), True, TRACE),
    Flag(("--trace-rate",), True, TRACE),
    Flag(("--trace-count",), True, TRACE),
    Flag(("--log-frequency",), True, TRACE),
    Flag(("--request-parameter",), True, "zeroserve sends no custom request parameters"),
    Flag(("--enable-mpi",), False, "no MPI: spread load over processes with --workers, servers with repeated --url"),
)


def refusal(flag: Flag) -> str:
    """The one line a refused flag gets (exit 2)."""
    return f"perf_analyzer's {'/'.join(flag.names)} is not supported by `zeroserve client perf`: {flag.why}"


def markdown_table(mapped: list[tuple[str, str]]) -> str:
    """docs/perf.md's table: each perf_analyzer flag, with what `client perf` does with it.

    `mapped` is (flag spelling, meaning) for the flags declared on the fields (perf_cli.mapped_flags())."""
    rows = [(names, meaning) for names, meaning in mapped]
    rows += [("/".join(f.names), "accepted: " + f.why) for f in ACCEPTED]
    rows += [("/".join(f.names), "refused: " + f.why) for f in REFUSED]
    lines = ["| perf_analyzer flag | `zeroserve client perf` |", "| --- | --- |"]
    lines += [f"| `{names}` | {meaning.replace('|', '/')} |" for names, meaning in sorted(rows, key=_order)]
    return "\n".join(lines) + "\n"


def _order(row: tuple[str, str]) -> tuple[int, str]:
    names = row[0].split("/")
    long = [n for n in names if n.startswith("--")]
    return (0, long[0]) if long else (1, names[0].lower())
