"""`client perf`'s command line, derived from the option fields: both vocabularies, their units, and the refusals.

Approach: the perf command's Typer signature is generated from the fields (client/perf/options.py)
rather than written out: one Typer option per spelling (zeroserve's `--window` in s and
perf_analyzer's `-p/--measurement-interval` in ms are two options of one field), plus a hidden
option per refused perf_analyzer flag (so it is refused by name, not as "No such option"). A
generated signature keeps Typer's parsing and `--help` while the fields stay the one declaration;
every generated option defaults to "not given", and `resolve()` fills the field's default — the
perf_analyzer default when the line speaks perf_analyzer's language — converts units and builds
the options object, which checks itself once.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

from zeroserve.client.perf import pa_flags
from zeroserve.client.perf.options import PerfOptions
from zeroserve.errors import InputError
from zeroserve.options import BOTH, PERF_ANALYZER, ZEROSERVE, Spelling, keyword, typer_option, typer_parameters

PA = PERF_ANALYZER

PA_PANEL = "perf_analyzer's spellings (its units; docs/perf.md)"
PA_PORTS = {"http": 8000, "grpc": 8001}  # perf_analyzer's -u default, localhost:8000 (8001 with -i grpc)
ENDPOINT_OPTIONS = ("host", "http_port", "grpc_port")  # zeroserve's spellings of what -u says
# zeroserve's fields whose perf_analyzer counterpart is another field
EQUIVALENT = {"latency_budget_ms": "-l/--latency-threshold (ms) with --binary-search"}

# the command's own options (not the library's): which model, and what is written where
COMMAND: tuple[tuple[str, Spelling, str], ...] = (
    ("model", Spelling(("-m",), PA, metavar="MODEL"), "The model (zeroserve: the MODEL argument)."),
    ("pa_csv", Spelling(("-f",), PA, convert=Path, metavar="FILE"), "Write perf_analyzer's CSV (µs) here."),
    ("verbose_csv", Spelling(("--verbose-csv",), PA, kind=bool), "-f adds perf_analyzer's verbose columns."),
    (
        "collect_metrics",
        Spelling(("--collect-metrics",), PA, kind=bool),
        "With --verbose-csv, -f adds perf_analyzer's GPU metric columns (empty without a GPU).",
    ),
    ("metrics_url", Spelling(("--metrics-url",), PA), "Triton's metrics endpoint for --collect-metrics."),
    (
        "metrics_interval_ms",
        Spelling(("--metrics-interval",), PA, unit="ms", kind=float),
        "How often --collect-metrics samples.",
    ),
    (
        "floor",
        Spelling(("--floor",), kind=bool),
        "Also measure the model's no-op twin on the same engine, level by level interleaved, and report the model "
        "beside it (a private server when the serving one lacks the twin; docs/metrics.md).",
    ),
    ("csv", Spelling(("--csv",), convert=Path, metavar="FILE"), "Write zeroserve's CSV (one row per level) here."),
    ("report", Spelling(("--report",), convert=Path, metavar="DIR"), "Write perf.json, .csv, .png and .html here."),
)


def _spellings() -> list[tuple[str, str, Spelling, str]]:
    """(parameter name, field, spelling, help) for every spelling of every option field and command option."""
    out = []
    for f in dataclasses.fields(PerfOptions):
        o = f.metadata["opt"]
        for i, s in enumerate(o.spellings):
            out.append((f"{f.name}_{i}", f.name, s, s.help or o.help))
    out += [(name, name, s, help) for name, s, help in COMMAND]
    return out


SPELLINGS = _spellings()
BY_PARAM = {p: (field, s) for p, field, s, _ in SPELLINGS}
PA_FLAGS = {f.param: f for f in (*pa_flags.ACCEPTED, *pa_flags.REFUSED)}


def signature(fixed: list[inspect.Parameter]) -> inspect.Signature:
    """The perf command's signature: `fixed` (the MODEL argument, endpoint and shared options), one option
    per spelling of each field and command option, and perf_analyzer's accepted and refused flags, hidden."""
    params = list(fixed) + typer_parameters(PerfOptions, {PA: PA_PANEL})
    for name, s, help in COMMAND:
        params.append(keyword(name, *typer_option(s, help, panel=PA_PANEL if s.vocab == PA else None)))
    for name, flag in PA_FLAGS.items():
        s = Spelling(flag.names, PA, kind=str if flag.takes_value else bool)
        params.append(keyword(name, *typer_option(s, flag.why, hidden=True)))
    return inspect.Signature(params)


def resolve(values: dict[str, Any], given: set[str]) -> tuple[PerfOptions, dict[str, Any], bool]:
    """The options object, the command options and whether the line speaks perf_analyzer's language.

    Raises InputError (exit 2) for a refused perf_analyzer flag, a field given twice, or a line
    mixing zeroserve's and perf_analyzer's spellings of the same options."""
    for name in sorted(given & PA_FLAGS.keys()):
        if PA_FLAGS[name] in pa_flags.REFUSED:
            raise InputError(pa_flags.refusal(PA_FLAGS[name]))
    spelled: dict[str, list[Spelling]] = {}
    for name in given & BY_PARAM.keys():
        field, s = BY_PARAM[name]
        spelled.setdefault(field, []).append(s)
    pa_given = [s for ss in spelled.values() for s in ss if s.vocab == PA] + [
        Spelling(PA_FLAGS[n].names, PA) for n in given & PA_FLAGS.keys()
    ]
    _refuse_mixed(spelled, pa_given, given)
    pa = bool(pa_given)
    fields, command = {}, {}
    for f in dataclasses.fields(PerfOptions):
        if f.name in spelled:
            fields[f.name] = _value(f.name, spelled[f.name][0], values)
        elif pa and f.metadata["opt"].pa_default:
            fields[f.name] = f.metadata["opt"].pa_default[0]
    for name, s, _ in COMMAND:
        command[name] = _value(name, s, values) if name in spelled else values[name]
    data = fields.get("input_data")
    if isinstance(data, str) and data in ("zero", "random"):  # perf_analyzer's --input-data zero|random
        fields["input_mode"], fields["input_data"] = data, None
    elif data is not None:
        fields["input_data"] = Path(data)
    return PerfOptions(**fields), command, pa


def _value(field: str, s: Spelling, values: dict[str, Any]) -> Any:
    """A given spelling's value in its field's unit."""
    name = next(p for p, (f, sp) in BY_PARAM.items() if f == field and sp is s)
    raw = values[name]
    return s.convert(raw) if s.convert else raw


def _refuse_mixed(spelled: dict[str, list[Spelling]], pa_given: list[Spelling], given: set[str]) -> None:
    """zeroserve's spelling of an option beside perf_analyzer's spellings (say which to use), or one option twice."""
    pa_names = "/".join(pa_given[0].names) if pa_given else ""
    for field, ss in spelled.items() if pa_given else ():
        zs = [s for s in ss if s.vocab == ZEROSERVE]
        alternatives = [a.label for a in _field_spellings(field) if a.vocab in (PA, BOTH)]
        alternatives += [EQUIVALENT[field]] if field in EQUIVALENT else []
        if zs and alternatives:
            raise InputError(
                f"{zs[0].names[0]} is zeroserve's spelling, but this command line speaks perf_analyzer's "
                f"({pa_names}): use {' or '.join(alternatives)} instead, or zeroserve's spellings throughout"
            )
    endpoint = [n for n in ENDPOINT_OPTIONS if n in given]
    if pa_given and endpoint:
        raise InputError(
            f"--{endpoint[0].replace('_', '-')} is zeroserve's spelling, but this command line speaks "
            f"perf_analyzer's ({pa_names}): use -u HOST:PORT instead, or zeroserve's spellings throughout"
        )
    for ss in spelled.values():
        if len(ss) > 1:
            raise InputError(f"{' and '.join(s.label for s in ss)} set the same option: give one of them")


def _field_spellings(field: str) -> list[Spelling]:
    return [s for _, f, s, _ in SPELLINGS if f == field]


def pa_default_url(protocol: str) -> str:
    """perf_analyzer's -u default for the protocol (localhost, on the loopback address zeroserve uses)."""
    return f"127.0.0.1:{PA_PORTS[protocol]}"


def mapped_flags() -> list[tuple[str, str]]:
    """(perf_analyzer spelling, what it means in `client perf`) for each mapped flag, for docs/perf.md."""
    out = []
    for _, field, s, help in SPELLINGS:
        if s.vocab == ZEROSERVE:
            continue
        zs = [a for a in _field_spellings(field) if a.vocab == ZEROSERVE]
        if s.vocab == BOTH:
            target = "the same spelling in zeroserve"
        elif zs:
            unit = f", {s.unit} → {zs[0].unit}" if s.unit and zs[0].unit and s.unit != zs[0].unit else ""
            target = f"zeroserve's {zs[0].names[0]}{unit}"
        else:
            target = "perf_analyzer's spelling only"
        out.append(("/".join(s.names), f"mapped ({target}): {help}"))
    return out
