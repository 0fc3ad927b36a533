"""Options declared once: a dataclass field carries its default, bound, unit, help and spellings.

Each capability's options object (perf's `client/perf/options.py`, tune's `tune/options.py`) is a
frozen dataclass of `opt(...)` fields, checked once when it is made (`check_fields`). A field may
have several spellings (`Spelling`), each with its vocabulary and a conversion to the field's unit
(perf_analyzer's `-p` in ms to perf's window in s). `typer_parameters` turns the fields into a
Typer signature, so a command line is derived from the fields instead of written out again.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from zeroserve.errors import InputError

ZEROSERVE, PERF_ANALYZER, BOTH = "zeroserve", "perf_analyzer", "both"
POSITIVE: dict[str, Any] = dict(low=0, low_open=True)  # a bound: > 0
PERCENTILE = dict(low=0, low_open=True, high=100, high_open=True)  # a latency percentile's bound, perf's and tune's


@dataclass(frozen=True)
class Spelling:
    """One way to write a field on the command line: its names, vocabulary, unit and conversion to the field."""

    names: tuple[str, ...]
    vocab: str = ZEROSERVE
    unit: str = ""
    convert: Callable[[Any], Any] | None = None  # the command-line value -> the field's value (and unit)
    kind: type = str  # the command-line value's type: str, int, float, bool (a flag), list (repeated str)
    metavar: str | None = None
    help: str = ""  # when it differs from the field's

    @property
    def label(self) -> str:
        return "/".join(self.names) + (f" ({self.unit})" if self.unit else "")


@dataclass(frozen=True)
class Opt:
    """A field's declaration: help, unit, bound (`low < v` or `low <= v`, `v <= high`) or choices, spellings."""

    help: str
    unit: str = ""
    low: float | None = None
    low_open: bool = False
    high: float | None = None
    high_open: bool = False
    choices: tuple[str, ...] = ()
    spellings: tuple[Spelling, ...] = ()
    pa_default: tuple = ()  # (the default when the command line speaks perf_analyzer's language,), if it differs

    def problem(self, value: Any) -> str | None:
        """Why `value` (a scalar, or each item of a list) breaks this field's bound or choices, or None."""
        for v in value if isinstance(value, list | tuple) else [value]:
            if v is None:
                continue
            if self.choices and v not in self.choices:
                return f"{v!r} is not one of {', '.join(self.choices)}"
            if self.low is not None and (v <= self.low if self.low_open else v < self.low):
                return f"{v:g} must be {'>' if self.low_open else '>='} {self.low:g}"
            if self.high is not None and (v >= self.high if self.high_open else v > self.high):
                return f"{v:g} must be {'<' if self.high_open else '<='} {self.high:g}"
        return None


def opt(default: Any, help: str, *spellings: Spelling, **kw) -> Any:
    """A dataclass field declared with its Opt (lists as tuples, so an options object is immutable)."""
    return field(default=default, metadata={"opt": Opt(help, spellings=spellings, **kw)})


def levels(kind: type) -> Callable[[str], tuple]:
    """zeroserve's `1,2,4` -> (1, 2, 4)."""

    def parse(text: str) -> tuple:
        out = []
        for part in text.split(","):
            if part.strip():
                try:
                    out.append(kind(part))
                except ValueError:
                    raise InputError(f"not a number: {part!r} in {text!r}") from None
        return tuple(out)

    return parse


def check_fields(obj: Any) -> None:
    """Each field's bound and choices (lists given by a caller kept as tuples); InputError naming its spellings."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, list):
            object.__setattr__(obj, f.name, tuple(value))
        problem = f.metadata["opt"].problem(getattr(obj, f.name))
        if problem:
            raise InputError(f"{spelled(obj, f.name)}: {problem}")


def spelled(cls: Any, name: str) -> str:
    """A field's spellings for a message: `--window (s) / -p/--measurement-interval (ms)`."""
    spellings = next(f.metadata["opt"].spellings for f in dataclasses.fields(cls) if f.name == name)
    return " / ".join(s.label for s in spellings) or name.replace("_", "-")


def as_json(obj: Any) -> dict:
    """An options object as a record embeds it: paths as text, tuples and shape maps as lists."""
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, Path):
            v = str(v)
        elif isinstance(v, dict):
            v = {k: list(x) for k, x in v.items()}
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


def typer_option(
    s: Spelling, help: str, hidden: bool = False, choices: tuple[str, ...] = (), panel: str | None = None
) -> tuple[Any, Any]:
    """The Typer annotation and "not given" default of one spelling."""
    unit = f" [{s.unit}]" if s.unit else ""
    if s.kind is bool:
        flag = typer.Option(*s.names, help=help + unit, rich_help_panel=panel, hidden=hidden, show_default=False)
        return Annotated[bool, flag], False
    kind: Any = list[str] if s.kind is list else s.kind
    metavar = s.metavar or ("|".join(choices) if choices else None)
    option = typer.Option(
        *s.names, help=help + unit, rich_help_panel=panel, hidden=hidden, show_default=False, metavar=metavar
    )
    return Annotated[kind | None, option], None


def keyword(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def typer_parameters(cls: Any, panels: dict[str, str] | None = None) -> list[inspect.Parameter]:
    """One keyword parameter `<field>_<i>` per spelling of each field (perf_analyzer's in its own help panel)."""
    params = []
    for f in dataclasses.fields(cls):
        o = f.metadata["opt"]
        for i, s in enumerate(o.spellings):
            annotation, default = typer_option(
                s, s.help or o.help, choices=o.choices, panel=(panels or {}).get(s.vocab)
            )
            params.append(keyword(f"{f.name}_{i}", annotation, default))
    return params


def given_params(ctx: typer.Context) -> set[str]:
    """The parameters the user wrote on the command line (not defaults, not environment variables)."""
    return {p for p in ctx.params if getattr(ctx.get_parameter_source(p), "name", None) == "COMMANDLINE"}


def from_command_line(cls: Any, values: dict[str, Any], given: set[str], **fixed: Any) -> Any:
    """The options object from a generated command's values: each given spelling converted, the rest defaults."""
    fields = dict(fixed)
    for f in dataclasses.fields(cls):
        for i, s in enumerate(f.metadata["opt"].spellings):
            name = f"{f.name}_{i}"
            if name in given:
                fields[f.name] = s.convert(values[name]) if s.convert else values[name]
    return cls(**fields)
