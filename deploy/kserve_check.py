"""KServe's rules for an InferenceService, checked offline: the CRD's schema with closed objects, and the Triton
runtime's.

The package carries only what the check needs (deploy/kserve_reference/): the InferenceService
CRD's `spec` subtree with the predictor in full (descriptions and list/map markers dropped) and the
`kserve-tritonserver` runtime's `supportedModelFormats` and `protocolVersions`, both derived from
KServe's own files by the functions below (a test compares them with ../shared/kserve/).
Objects are closed, as kubectl's strict field validation treats them: an unknown field is refused.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from pathlib import Path
from typing import Any

from zeroserve.errors import InputError

REFERENCE = Path(__file__).with_name("kserve_reference")
SCHEMA_FILE = REFERENCE / "inferenceservice-spec.schema.json"
RUNTIME_FILE = REFERENCE / "kserve-tritonserver.json"
SOURCE = "kserve/kserve at aaac4e294dae (after v0.20.0): config/crd/full, config/runtimes"

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
RUNTIME = "kserve-tritonserver"
NAME_RULE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")  # KServe's InferenceService name check
NAMESPACE_RULE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # a Kubernetes namespace: a DNS-1123 label
DEFAULT_PROTOCOL = "v1"  # what KServe assumes when protocolVersion is absent (predictor_model.go, GetProtocol)

DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"
# Knative (Serverless before KServe 0.15) autoscales on any scaleMetric; Standard (RawDeployment) uses the HPA,
# which scales on cpu and memory only.
DEPLOYMENT_MODES = {
    "Knative": "knative",
    "Serverless": "knative",
    "Standard": "standard",
    "RawDeployment": "standard",
    "ModelMesh": "modelmesh",
}
HPA_METRICS = ("cpu", "memory")

# What the check reads of a schema node; the rest of the CRD's keywords are dropped from the shipped copy.
KEYWORDS = (
    "type",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "anyOf",
    "enum",
    "pattern",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "maxLength",
    "minLength",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
)
OBJECT_META = (
    "name",
    "generateName",
    "namespace",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
)
TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec", "status")


# ---------------------------------------------------------------- the shipped rules, from KServe's files


def _prune(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "properties":
                out[k] = {name: _prune(sub) for name, sub in v.items()}
            elif k in KEYWORDS:
                out[k] = _prune(v)
        return out
    if isinstance(node, list):
        return [_prune(v) for v in node]
    return node


def spec_schema_from_crd(crd: dict) -> dict:
    """The CRD's `spec` node, its predictor in full; canary, explainer and transformer are left open (not checked)."""
    version = next(v for v in crd["spec"]["versions"] if v["name"] == API_VERSION.rsplit("/", 1)[1])
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    pruned = _prune(spec)
    pruned["properties"] = {
        name: (sub if name == "predictor" else {"x-kubernetes-preserve-unknown-fields": True})
        for name, sub in pruned["properties"].items()
    }
    return pruned


def runtime_rules_from_yaml(runtime: dict) -> dict:
    """The runtime's name, formats (name, version, autoSelect) and protocol versions."""
    return {
        "name": runtime["metadata"]["name"],
        "supportedModelFormats": [
            {"name": f["name"], "version": str(f.get("version", "")), "autoSelect": bool(f.get("autoSelect", False))}
            for f in runtime["spec"]["supportedModelFormats"]
        ],
        "protocolVersions": list(runtime["spec"]["protocolVersions"]),
    }


def write_reference(crd_path: Path, runtime_path: Path, folder: Path = REFERENCE) -> None:
    """Derive the shipped rules from KServe's CRD and runtime YAML (how deploy/kserve_reference/ was made)."""
    import yaml

    from zeroserve import records

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(Path(crd_path).read_text(), Loader=loader)
    runtime = yaml.load(Path(runtime_path).read_text(), Loader=loader)
    folder.mkdir(parents=True, exist_ok=True)
    records.write_bytes(
        folder / SCHEMA_FILE.name, json.dumps(spec_schema_from_crd(crd), sort_keys=True, separators=(",", ":")).encode()
    )
    records.write_bytes(
        folder / RUNTIME_FILE.name, (json.dumps(runtime_rules_from_yaml(runtime), indent=1) + "\n").encode()
    )


@functools.cache
def spec_schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


@functools.cache
def runtime_rules() -> dict:
    return json.loads(RUNTIME_FILE.read_text())


# ---------------------------------------------------------------- the schema, objects closed

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


def _type_name(value: Any) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _is(value: Any, t: str) -> bool:
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES.get(t, object))


def _unknown(path: str, key: str, known: list[str]) -> str:
    lower = {k.lower(): k for k in known}
    guess = lower.get(str(key).lower()) or next(iter(difflib.get_close_matches(str(key), known, 1, 0.75)), None)
    return f"{path}.{key}: unknown field" + (f" (did you mean {guess}?)" if guess else "")


def schema_violations(value: Any, schema: dict, path: str) -> list[str]:
    """One line per place where `value` breaks `schema` (types, enums, required, closed properties, items, patterns)."""
    out: list[str] = []
    if not schema or schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return out
    if schema.get("x-kubernetes-int-or-string"):  # noqa: SIM102 - its own branch: anyOf below is skipped for it
        if not (_is(value, "integer") or isinstance(value, str)):
            return [f"{path}: expected an integer or a string, got {_type_name(value)}"]
    elif "anyOf" in schema and all(schema_violations(value, branch, path) for branch in schema["anyOf"]):
        return [
            f"{path}: {_type_name(value)} {value!r} matches none of "
            + ", ".join(b.get("type", "?") for b in schema["anyOf"])
        ]
    t = schema.get("type")
    if t and not _is(value, t):
        return [f"{path}: expected {t}, got {_type_name(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} is not one of {', '.join(map(str, schema['enum']))}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if len(value) > schema.get("maxLength", len(value)) or len(value) < schema.get("minLength", 0):
            out.append(f"{path}: {value!r} has the wrong length")
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # noqa: SIM102 - a type test, then a range
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            out.append(f"{path}: {value} is out of range")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            out.append(f"{path}: needs at least {schema['minItems']} item(s)")
        for i, item in enumerate(value):
            out += schema_violations(item, schema.get("items", {}), f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{path}.{key}: required field missing")
        for key, sub in value.items():
            if key in props:
                out += schema_violations(sub, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                out += schema_violations(sub, extra, f"{path}.{key}")
            elif extra is True or schema.get("x-kubernetes-preserve-unknown-fields"):
                continue
            else:
                out.append(_unknown(path, key, list(props)))
    return out


# ---------------------------------------------------------------- the whole manifest


def _formats_text(rules: dict) -> str:
    by_name: dict[str, list[str]] = {}
    for f in rules["supportedModelFormats"]:
        by_name.setdefault(f["name"], []).append(f["version"])
    return ", ".join(f"{n} {'/'.join(v)}" for n, v in by_name.items())


def runtime_violations(predictor: dict, rules: dict | None = None) -> list[str]:
    """The Triton runtime's rules: a model format it supports (auto-selected unless named) and a protocol it lists."""
    rules = rules or runtime_rules()
    model = predictor.get("model")
    path = "spec.predictor.model"
    if not isinstance(model, dict):
        return [f"{path}: missing; zeroserve checks a predictor that names its model (modelFormat, runtime)"]
    out = []
    runtime = model.get("runtime")
    if runtime is not None and runtime != rules["name"]:
        out.append(f"{path}.runtime: {runtime!r} is not {rules['name']}, the Triton runtime whose rules are checked")
    fmt = model.get("modelFormat")
    fmt = fmt if isinstance(fmt, dict) else {}
    name, version = fmt.get("name"), fmt.get("version")
    if isinstance(name, str):
        entries = [f for f in rules["supportedModelFormats"] if f["name"] == name]
        if not entries:
            out.append(
                f"{path}.modelFormat.name: {name!r} is not a format {rules['name']} supports ({_formats_text(rules)})"
            )
        elif version is not None and not any(
            str(version) == f["version"] or str(version).startswith(f["version"] + ".") for f in entries
        ):
            out.append(
                f"{path}.modelFormat.version: {name} {version} is not one {rules['name']} supports "
                f"({name} {'/'.join(f['version'] for f in entries)})"
            )
        elif runtime is None and not any(f["autoSelect"] for f in entries):
            out.append(
                f"{path}.runtime: missing, and {rules['name']} does not auto-select {name}: "
                f"name runtime: {rules['name']}"
            )
    protocol = model.get("protocolVersion")
    listed = ", ".join(rules["protocolVersions"])
    if protocol is None:
        out.append(
            f"{path}.protocolVersion: missing; KServe then assumes {DEFAULT_PROTOCOL}, which {rules['name']} "
            f"does not support (it lists {listed})"
        )
    elif protocol not in rules["protocolVersions"]:
        out.append(f"{path}.protocolVersion: {protocol!r} is not supported by {rules['name']} (it lists {listed})")
    return out


def violations(manifest: Any) -> list[str]:
    """Every reason KServe (its API server in strict mode, or its controller) would refuse this InferenceService."""
    if not isinstance(manifest, dict):
        return [f"the manifest is a {_type_name(manifest)}, not an object"]
    out = [_unknown("", k, list(TOP_LEVEL)).lstrip(".") for k in manifest if k not in TOP_LEVEL]
    if manifest.get("apiVersion") != API_VERSION:
        out.append(f"apiVersion: {manifest.get('apiVersion')!r}, expected {API_VERSION}")
    if manifest.get("kind") != KIND:
        out.append(f"kind: {manifest.get('kind')!r}, expected {KIND}")
    meta = manifest.get("metadata")
    if not isinstance(meta, dict):
        out.append("metadata: missing or not an object")
        meta = {}
    out += [_unknown("metadata", k, list(OBJECT_META)) for k in meta if k not in OBJECT_META]
    name = meta.get("name")
    if not isinstance(name, str):
        out.append("metadata.name: missing")
    elif not NAME_RULE.fullmatch(name):
        out.append(
            f"metadata.name: {name!r} breaks KServe's name rule {NAME_RULE.pattern} (lower case letters, "
            "digits and dashes, starting with a letter; no underscores)"
        )
    ns = meta.get("namespace")
    if ns is not None and not (isinstance(ns, str) and NAMESPACE_RULE.fullmatch(ns) and len(ns) <= 63):
        out.append(
            f"metadata.namespace: {ns!r} is not a Kubernetes namespace name ({NAMESPACE_RULE.pattern}, "
            "at most 63 characters)"
        )
    for key in ("labels", "annotations"):
        if key in meta:
            out += schema_violations(
                meta[key], {"type": "object", "additionalProperties": {"type": "string"}}, f"metadata.{key}"
            )
    spec = manifest.get("spec")
    if not isinstance(spec, dict):
        return out + ["spec: missing or not an object"]
    out += schema_violations(spec, spec_schema(), "spec")
    predictor = spec.get("predictor")
    if isinstance(predictor, dict):
        out += runtime_violations(predictor)
        out += _mode_violations(meta.get("annotations") or {}, predictor)
    return out


def _mode_violations(annotations: dict, predictor: dict) -> list[str]:
    mode = annotations.get(DEPLOYMENT_MODE) if isinstance(annotations, dict) else None
    if mode is None:
        return []
    if mode not in DEPLOYMENT_MODES:
        return [f"metadata.annotations.{DEPLOYMENT_MODE}: {mode!r} is not one of {', '.join(DEPLOYMENT_MODES)}"]
    metric = predictor.get("scaleMetric")
    if DEPLOYMENT_MODES[mode] == "standard" and metric is not None and metric not in HPA_METRICS:
        return [
            f"spec.predictor.scaleMetric: {metric!r} does not autoscale in {mode} mode (the HPA scales on "
            f"{' or '.join(HPA_METRICS)}; {metric} needs Knative mode)"
        ]
    return []


def check_file(path: Path) -> list[str]:
    """The violations of the InferenceService(s) in a YAML file; InputError when it cannot be read as YAML."""
    import yaml

    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else None
        raise InputError(f"{path}: cannot be read ({why or type(exc).__name__})") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(f"{path}: not YAML{where}") from None
    if not docs:
        raise InputError(f"{path}: no YAML document in it")
    out = []
    for i, doc in enumerate(docs):
        prefix = f"document {i + 1}: " if len(docs) > 1 else ""
        out += [prefix + line for line in violations(doc)]
    return out
