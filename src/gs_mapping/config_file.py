"""Dataclass configuration loaded from ROS 2 parameter YAML.

The files in ``config/`` have the form ROS uses::

    /**:
      ros__parameters:
        mapper:
          max_gaussians: 200000

so the same file serves ``ros2 launch`` and the CLI. Each component owns a dataclass (with defaults)
and a section name; :func:`load_section` builds it from a file, and an unknown key is an error that
names the key and the file. :func:`flatten` turns a config into the dotted names rclpy declares.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError, MapError
from .input_files import read_bytes

T = TypeVar("T")


def param(default: Any, description: str, range: tuple[float, float] | None = None, **kw: Any) -> Any:
    """A documented config field: ``rate_hz: float = param(2.0, "publish rate", (0.1, 100))``.

    The description and range become the ROS 2 ParameterDescriptor when a node declares it, and
    the range is checked when the config is built from a file."""
    meta = {"description": description, "range": range}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta, **kw)
    return dataclasses.field(default=default, metadata=meta, **kw)


def describe(cls: type) -> dict[str, dict[str, Any]]:
    """Dotted parameter name → {default, description, range} for a (nested) config dataclass."""
    out: dict[str, dict[str, Any]] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            for k, v in describe(tp).items():
                out[f"{f.name}.{k}"] = v
            continue
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )
        out[f.name] = {
            "default": default,
            "description": f.metadata.get("description", ""),
            "range": f.metadata.get("range"),
        }
    return out


MAX_CONFIG_BYTES = 16 << 20  # a parameter file is a few kB; a larger one is not one


def read_parameters(path: str | Path, node_fqn: str | None = None) -> dict[str, Any]:
    """The ``ros__parameters`` of a ROS parameter YAML that apply to node ``node_fqn``
    (``/ns/name``), merged in file order as rclpy does; every key's when ``node_fqn`` is None (a
    reader that is no node: hd-train's recipe). Values are typed as rcl types them."""
    merged: dict[str, Any] = {}
    for key, params in parameter_entries(path):
        if node_fqn is None or node_key_matches(key, node_fqn, path):
            _deep_merge(merged, params)
    return merged


def parameter_entries(path: str | Path) -> list[tuple[str, dict]]:
    """``(node key, nested parameters)`` of a ROS parameter YAML, in file order, typed as rcl
    types them; ConfigError naming the file for anything rcl would not read."""
    if not str(path):  # (Path("") is ".", the working directory)
        raise ConfigError("the parameter file path is empty")
    path = Path(path)
    try:
        docs = rcl_yaml_documents(read_bytes(path, limit=MAX_CONFIG_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a YAML text file (not UTF-8 at byte {exc.start})") from None
    except RecursionError:
        raise ConfigError(f"{path}: cannot read YAML: nested too deeply") from None
    except MapError as exc:  # beyond the size limit
        raise ConfigError(f"{exc}: too large for a parameter file") from None
    except OSError as exc:  # (a FIFO or a device: not a regular file)
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: cannot read YAML: {str(exc).splitlines()[0]}") from None
    # rcl keeps one entry per node key, where it first appears; a later block of the same key (in
    # the same YAML document or a later one: rcl reads every document of the file) overwrites its
    # values there (rclpy then applies the entries in that order)
    entries: dict[str, dict] = {}
    for i, doc in enumerate(docs):
        if doc is None:  # ('---' with nothing after it; a file of comments only has no document)
            raise ConfigError(f"{path}: YAML document {i + 1} is empty (rcl refuses an empty document)")
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: expected a mapping of node names to ros__parameters")
        for key, params in _node_entries(doc, "", path):
            _deep_merge(entries.setdefault(key, {}), params)
    return list(entries.items())


def _node_entries(doc: dict, prefix: str, path: Path) -> list[tuple[str, dict]]:
    """``(node key, parameters)`` in file order. rcl's layout: node names (and namespaces, which
    may nest: ``/car1:`` → ``mapper_node:``) down to a ``ros__parameters`` mapping, whose dotted
    names (``mapper.optim.lr_means``) are the nested ones."""
    out: list[tuple[str, dict]] = []
    # rcl (parse_key) takes any key that starts with 'ros__parameters' for it
    params_key = next((k for k in doc if str(k).startswith("ros__parameters")), None)
    if prefix and params_key is not None and len(doc) > 1:
        other = next(k for k in doc if k != params_key)
        raise ConfigError(
            f"{path}: key {prefix!r} must hold exactly one 'ros__parameters' mapping ({other!r} beside it)"
        )
    for name, body in doc.items():
        # rcl joins nested node keys with one '/' (none after a key that ends with one)
        where = f"{prefix}{'' if prefix.endswith('/') else '/'}{name}" if prefix else str(name)
        if name == params_key:
            if not prefix:
                raise ConfigError(f"{path}: no node name before {name!r} (rcl refuses the file)")
            check_node_key(prefix, path)
            if body is None:
                raise ConfigError(
                    f"{path}: {prefix}.ros__parameters holds nothing (rcl refuses an empty "
                    f"'ros__parameters:'; write 'ros__parameters: {{}}' for no parameters)"
                )
            if not isinstance(body, dict):
                raise ConfigError(f"{path}: {prefix}.ros__parameters must be a mapping")
            _check_values(body, path, f"{prefix}.ros__parameters")
            out.append((prefix, unflatten_nested(body)))
        elif isinstance(body, dict) and body:
            out += _node_entries(body, where, path)
        else:
            raise ConfigError(f"{path}: key {where!r} must hold a 'ros__parameters' mapping")
    return out


_NAME_TOKEN = r"(?:\*\*?|[A-Za-z_][A-Za-z0-9_]*)"  # rmw_validate_node_name / _namespace, or a wildcard
_NODE_KEY = re.compile(rf"/?{_NAME_TOKEN}(?:/{_NAME_TOKEN})*")


def check_node_key(key: str, path: str | Path = "") -> None:
    """ConfigError unless ``key`` is a node key rcl reads (``_validate_name``): namespace parts and
    node name of ASCII letters, digits and _, none starting with a digit or empty, or ``*`` /
    ``**``. rcl refuses the whole file for one such key, so ``ros2 run`` starts no node."""
    if not _NODE_KEY.fullmatch(key):
        raise ConfigError(
            f"{path}: {key!r} is not a ROS node name (rcl refuses the file): each name between '/' "
            f"is letters, digits and _, not starting with a digit, or * or **"
        )


def _rcl_kind(v: Any) -> str:
    return (
        "bool"
        if isinstance(v, bool)
        else "integer"
        if isinstance(v, int)
        else ("double" if isinstance(v, float) else "string" if isinstance(v, str) else type(v).__name__)
    )


def _check_values(params: dict, path: Path, where: str) -> None:
    """ConfigError for a value rcl_yaml_param_parser does not read as a parameter's, so that the
    CLI refuses what ``ros2 run``/``ros2 launch`` refuse: an empty value (rcl: "No value"), an empty
    mapping (rcl gives it no value and reads the keys after it inside it: ``densify: {}`` then
    ``sh_degree: 1`` is ``densify.sh_degree``), and a list rcl does not read as an array parameter:
    items of two types (``[-2, -1.5]``: an integer then a double), an empty list (rcl gives the
    parameter no value, and launch_ros refuses ``[]``), a list holding lists, mappings or empty
    items."""
    for name, value in params.items():
        key = f"{where}.{name}"
        if value is None or (isinstance(value, list) and None in value):
            raise ConfigError(
                f"{path}: {key}: an empty value (rcl refuses it; leave the key out for the default)"
            )
        if value == {}:
            raise ConfigError(
                f"{path}: {key}: an empty mapping (rcl gives it no value and reads the keys after it "
                f"as inside it); leave it out"
            )
        if isinstance(value, dict):
            _check_values(value, path, key)
        elif isinstance(value, list):
            if not value:
                raise ConfigError(
                    f"{path}: {key}: an empty list is no value under ROS 2 (rcl); leave the key out "
                    f"for the default"
                )
            kinds = [_rcl_kind(v) for v in value]
            if not set(kinds) <= {"bool", "integer", "double", "string"}:
                bad = next(k for k in kinds if k not in ("bool", "integer", "double", "string"))
                raise ConfigError(
                    f"{path}: {key}: a ROS 2 array holds bools, integers, doubles or strings, not {bad}"
                )
            if len(set(kinds)) > 1:
                raise ConfigError(
                    f"{path}: {key}: items of one type in a ROS 2 array (rcl refuses {kinds[0]} and "
                    f"{next(k for k in kinds if k != kinds[0])} together; write 2.0, not 2, among doubles)"
                )


def node_key_matches(key: str, node_fqn: str, path: str | Path = "") -> bool:
    """Whether a parameter file's node key applies to node ``node_fqn`` — rclpy's rule: a leading
    ``/`` is implied, ``/*`` stands for one name token and ``/**`` for any number of them."""
    check_node_key(key, path)
    key = key if key.startswith("/") else "/" + key
    return re.fullmatch(key.replace("/*", r"(/\w+)"), node_fqn) is not None


def unflatten_nested(params: dict[str, Any]) -> dict[str, Any]:
    """A ``ros__parameters`` mapping with dotted names (``optim.lr: 1``) as nested mappings, as rcl
    reads both (``optim: {lr: 1}``)."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        value = unflatten_nested(value) if isinstance(value, dict) else value
        _deep_merge(out, unflatten({str(name): value}))
    return out


def rcl_yaml(text: str) -> Any:
    """YAML text read as rcl reads a ``-p name:=value`` (see :class:`_RclLoader`)."""
    return yaml.load(text, Loader=_RclLoader)


def rcl_yaml_documents(text: str) -> list[Any]:
    """Each YAML document of a parameter file, read as rcl reads them (rcl reads them all)."""
    return list(yaml.load_all(text, Loader=_RclLoader))


_RCL_SCALAR, _RCL_KEY = "!rcl", "!rcl-key"


class _RclLoader(yaml.SafeLoader):
    """PyYAML reading as rcl_yaml_param_parser does, which sees a scalar's text and quoting and
    nothing else: no tags (``!!float 2`` is the integer 2; ``!!str 0x10`` is refused: Humble
    reads 16, Jazzy ``"0x10"``), no null (``~`` is the string ``~``), no aliases (refused); a
    file's YAML documents are all read (:func:`rcl_yaml_documents`). A scalar that is not quoted (plain or a block ``|``,
    ``>``) is typed as ``get_value`` does: the words of :data:`_RCL_BOOLS`, then an integer as C's
    ``strtoll(…, 0)`` reads one, then a double as ``strtod`` does (and YAML's ``.inf`` / ``.nan``),
    else a string. PyYAML's YAML 1.1 reads ``5e-4`` as a string and ``2024-05-01`` as a date;
    ``ros2 run`` reads them as a double and a string, and the CLI reads the same file as it does.
    A quoted scalar is a string; an empty one that is not quoted is None (rcl: "No value")."""

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        # a scalar without a tag: typed by _rcl_scalar (an explicit tag keeps its tag until
        # construct_object, which only checks '!!str')
        return _RCL_SCALAR if kind is yaml.ScalarNode else super().resolve(kind, value, implicit)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):  # rcl: "Will not support aliasing"
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                f"an alias (*{event.anchor}) at line {event.start_mark.line + 1}: rcl reads no YAML "
                f"aliases (nor '<<' merge keys); write the value out",
                None,
            )
        return super().compose_node(parent, index)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # a tag rcl does not see (!!set is a mapping, !!binary text): by the node's kind only
        if isinstance(node, yaml.ScalarNode):
            if node.tag == "tag:yaml.org,2002:str" and node.style not in ("'", '"'):
                self._check_str_tag(node)
            node.tag = _RCL_KEY if node.tag == _RCL_KEY else _RCL_SCALAR
        else:
            node.tag = "tag:yaml.org,2002:" + ("seq" if isinstance(node, yaml.SequenceNode) else "map")
        return super().construct_object(node, deep=deep)

    def _check_str_tag(self, node: yaml.ScalarNode) -> None:
        # Jazzy's get_value reads '!!str' as a string, Humble's ignores it like any tag
        value = _rcl_scalar(self, node)
        if value is not None and not isinstance(value, str):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"'!!str {node.value}' at line {node.start_mark.line + 1}: ROS 2 Jazzy reads a string, "
                f"Humble the {_rcl_kind(value)} {value!r}; quote it",
                None,
            )

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        # rcl reads keys (node names, parameter names) as written: ``n:`` or ``1:`` is no value
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key_node.tag = _RCL_KEY
        return super().construct_mapping(node, deep=deep)


_RCL_BOOLS = dict.fromkeys(("Y", "y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True)
_RCL_BOOLS.update(
    dict.fromkeys(("N", "n", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False)
)
_RCL_INT = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")  # strtoll, base 0
_RCL_DOUBLE = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"  # strtod's decimal form
    r"|0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?"  # its hex form
    r"|(?i:inf|infinity|nan(?:\([0-9A-Za-z_]*\))?))"
)
_RCL_YAML_FLOATS = {
    f"{sign}.{w}": float(f"{sign}inf") for sign in ("", "+", "-") for w in ("inf", "Inf", "INF")
}
_RCL_YAML_FLOATS.update(dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan))


def _rcl_scalar(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = loader.construct_scalar(node)
    if node.style in ("'", '"'):
        return text
    if text == "":
        return None
    if text in _RCL_BOOLS:
        return _RCL_BOOLS[text]
    body = text.lstrip("+-")
    if _RCL_INT.fullmatch(text):
        base = 16 if body[:2] in ("0x", "0X") else 8 if body[0] == "0" else 10
        # beyond int64 (or Python's 4300-digit limit): strtoll's ERANGE, and rcl tries a double
        if len(body) <= 64:
            value = int(body, base) * (-1 if text[0] == "-" else 1)
            if -(2**63) <= value < 2**63:
                return value
    if text in _RCL_YAML_FLOATS:
        return _RCL_YAML_FLOATS[text]
    if _RCL_DOUBLE.fullmatch(text):
        hexa = body[:2] in ("0x", "0X")
        try:
            if body[:1] in "nN":
                value = math.nan  # (float() takes no "nan(…)")
            else:
                value = float.fromhex(text) if hexa else float(text)
        except OverflowError:
            value = math.inf
        # strtod's ERANGE (rcl keeps the text): an overflow, or an underflow to zero or a subnormal
        mantissa = re.split("[pP]" if hexa else "[eE]", body[2:] if hexa else body)[0]
        tiny = abs(value) < sys.float_info.min and mantissa.strip("0.") != ""
        if (not math.isinf(value) or body[:1] in "iI") and not tiny:
            return value
    return text


_RclLoader.add_constructor(_RCL_SCALAR, _rcl_scalar)
_RclLoader.add_constructor(_RCL_KEY, yaml.SafeLoader.construct_scalar)


def _deep_merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def load_section(path: str | Path | None, section: str, cls: type[T], params: dict | None = None) -> T:
    """Build ``cls`` from ``section`` of a parameter file; defaults when ``path`` is None or the
    section is absent. ``params``: the file's parameters, read already (else it is read here)."""
    if path is None:
        return cls()
    params = read_parameters(path) if params is None else params
    data = params.get(section, {})
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: section {section!r} must be a mapping")
    return from_dict(cls, data, where=f"{path}: {section}")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a (possibly nested) dict, checking keys and types."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    for f in dataclasses.fields(cls):
        bounds = f.metadata.get("range")
        if bounds and f.name in kwargs and isinstance(kwargs[f.name], (int, float)):
            lo, hi = bounds
            if not lo <= kwargs[f.name] <= hi:
                raise ConfigError(f"{where}.{f.name}: {kwargs[f.name]} is outside [{lo}, {hi}]")
    try:
        obj = cls(**kwargs)
    except ConfigError as exc:  # a cross-field check of the class itself: name the file too
        text, file = str(exc), where.split(": ")[0]
        raise ConfigError(text if text.startswith(file) else f"{file}: {text}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return obj


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(
                _coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=False))
            )
        item = args[0] if args else Any
        out = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as a plain nested dict (tuples become lists, for YAML/JSON)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted parameter names (``mapper.keyframe.min_translation_m``) → values, as rclpy declares."""
    out: dict[str, Any] = {}
    for key, value in to_dict(cfg).items() if dataclasses.is_dataclass(cfg) else cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def unflatten(params: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten`."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        node = out
        *parents, leaf = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def dump_section(name: str, cfg: Any, indent: int = 4) -> str:
    """One section of a parameter file: YAML of ``cfg``'s values, each field's description (from
    :func:`param`) as a comment above it. Round-trips through :func:`load_section`."""
    lines = [" " * indent + f"{name}:"]
    _dump_fields(cfg, indent + 2, lines)
    return "\n".join(lines)


def _dump_fields(cfg: Any, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        desc = f.metadata.get("description")
        bounds = f.metadata.get("range")
        if desc:
            lines.append(f"{pad}# {desc}" + (f" [{bounds[0]}, {bounds[1]}]" if bounds else ""))
        if dataclasses.is_dataclass(value):
            lines.append(f"{pad}{f.name}:")
            _dump_fields(value, indent + 2, lines)
        else:
            plain = list(value) if isinstance(value, tuple) else value
            text = yaml.safe_dump(plain, default_flow_style=True, width=1000).strip()
            text = text.removesuffix("\n...").removesuffix("...").strip()
            lines.append(f"{pad}{f.name}: {text}")
