"""rclpy's own Python package, run in a plain venv: only its C extension and the message classes stood in.

What is REAL here: every line of the ``rclpy`` Python package — Node, parameters (declaration,
overrides, descriptors, read-only, set-parameters callbacks, the parameter services), QoS profiles,
RcutilsLogger with its filters, executors, timers, publishers, subscriptions, services, time sources,
shutdown. In CI that package is Humble's, from PyPI ``rclpy-intellisense==1.2.0`` (byte for byte the
``rclpy/`` directory of ros2/rclpy at tag 3.3.15, the humble branch, plus one ``__version__`` line).
Jazzy's runs the same way from a checkout of the jazzy branch (``RCLPY_SOURCE=/path/to/rclpy/rclpy``).

What is STOOD IN (this module), because it is compiled code that cannot be installed here:

- ``rclpy._rclpy_pybind11`` (what ``rclpy.impl.implementation_singleton.rclpy_implementation`` loads):
  :class:`StandIn` below. It does in-process what rcl/rmw do: contexts, the ``--ros-args`` parser
  (``--params-file``, ``-p``, ``-r __node:=/__ns:=``) and rcl's parameter-YAML rules (``/**`` and
  node-name keys, nested keys joined by ``.``, YAML ints as INTEGER, floats as DOUBLE, homogeneous
  lists), topic-name expansion, a process-wide bus matching publishers to subscriptions by resolved
  name, type and QoS compatibility (reliability, durability), keep-last queues of each
  subscription's depth, transient-local history replayed to late joiners, services, timers on the
  ROS clock, guard conditions, wait sets, and log output (kept in :data:`LOG` and sent on to Python
  logging). Messages cross the bus as CDR bytes (serialised by rosbags from the message's own
  fields) and are rebuilt into the subscriber's class, as a middleware would. Not modelled: DDS
  discovery, QoS deadline/lifespan/liveliness, intra-process, the graph API beyond counts, loaned
  messages, content filters, ``/rosout``.
- rosidl-generated message and service classes: :func:`install_interfaces` generates them from the
  rosbags typestore of the distro (the real ``.msg`` layouts, constants included) with setters that
  check what rosidl_generator_py's check (exact Python types, ``array.array`` type codes for
  ``sequence<primitive>``, numpy arrays for fixed-size numeric arrays, bounds). The six
  ``rcl_interfaces`` parameter services (and Jazzy's logger-level and type-description services) are
  written out below from their ``.srv`` files, because the typestore carries messages only.
"""

from __future__ import annotations

import array
import contextlib
import importlib
import importlib.util
import logging
import os
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from gs_mapping.config_file import node_key_matches, parameter_entries, rcl_yaml

log = logging.getLogger("rclpy_standin")
LOG: list[tuple[int, str, str]] = []  # (severity, logger name, message) of every rclpy log call

# -- message classes --------------------------------------------------------------------------------

_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "uint8": (0, 2**8 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
    "char": (0, 255),
}
_CODES = {"int8": "b", "uint8": "B", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I"}
_CODES |= {"int64": "q", "uint64": "Q", "float32": "f", "float64": "d", "char": "B"}
_FLOATS = ("float32", "float64")

# rcl_interfaces services (and Jazzy's), from their .srv files: name -> (request fields, response fields)
SERVICES = {
    "rcl_interfaces/srv/DescribeParameters": (
        "string[] names",
        "rcl_interfaces/ParameterDescriptor[] descriptors",
    ),
    "rcl_interfaces/srv/GetParameters": ("string[] names", "rcl_interfaces/ParameterValue[] values"),
    "rcl_interfaces/srv/GetParameterTypes": ("string[] names", "uint8[] types"),
    "rcl_interfaces/srv/ListParameters": (
        "uint64 DEPTH_RECURSIVE=0\nstring[] prefixes\nuint64 depth",
        "rcl_interfaces/ListParametersResult result",
    ),
    "rcl_interfaces/srv/SetParameters": (
        "rcl_interfaces/Parameter[] parameters",
        "rcl_interfaces/SetParametersResult[] results",
    ),
    "rcl_interfaces/srv/SetParametersAtomically": (
        "rcl_interfaces/Parameter[] parameters",
        "rcl_interfaces/SetParametersResult result",
    ),
    "rcl_interfaces/srv/GetLoggerLevels": ("string[] names", "rcl_interfaces/LoggerLevel[] levels"),
    "rcl_interfaces/srv/SetLoggerLevels": (
        "rcl_interfaces/LoggerLevel[] levels",
        "rcl_interfaces/SetLoggerLevelsResult[] results",
    ),
    "type_description_interfaces/srv/GetTypeDescription": (
        "string type_name\nstring type_hash\nbool include_type_sources",
        "bool successful\nstring failure_reason\n"
        "type_description_interfaces/TypeDescription type_description\n"
        "type_description_interfaces/TypeSource[] type_sources\n"
        "type_description_interfaces/KeyValue[] extra_information",
    ),
}


class _Meta(type):
    """What rclpy's type_support checks find on a rosidl metaclass."""

    _TYPE_SUPPORT = "standin"
    _CREATE_ROS_MESSAGE = _CONVERT_FROM_PY = _CONVERT_TO_PY = _DESTROY_ROS_MESSAGE = "standin"

    @classmethod
    def __import_type_support__(cls):
        pass


class Interfaces:
    """Generated classes of one typestore: ``classes['sensor_msgs/msg/Image']``."""

    def __init__(self, store):
        self.store = store
        self.classes: dict[str, type] = {}

    # field kinds as (kind, detail): ("prim", "float64"), ("str", bound), ("msg", typename),
    # ("seq", (inner, bound or 0)), ("arr", (inner, n))
    def _kind(self, nodetype: int, info: Any) -> tuple:
        kind = int(nodetype)
        if kind == 1:  # base
            name = info[0]
            return ("str", info[1]) if name in ("string", "wstring") else ("prim", name)
        if kind == 2:  # name
            return ("msg", info)
        (sub, subinfo), n = info
        return ("arr" if kind == 3 else "seq", (self._kind(sub, subinfo), n))

    def make(self, typename: str, fielddefs: list, consts: list) -> type:
        if typename in self.classes:
            return self.classes[typename]
        fields = {name: self._kind(nt, info) for name, (nt, info) in fielddefs}
        interfaces = self

        def __init__(self, **kwargs):
            unknown = set(kwargs) - set(fields)
            assert not unknown, f"Invalid arguments passed to constructor: {', '.join(sorted(unknown))}"
            for f, kind in fields.items():
                setattr(self, f, kwargs[f] if f in kwargs else interfaces.default(kind))

        def __eq__(self, other):
            if not isinstance(other, self.__class__):
                return False
            for f in fields:
                a, b = getattr(self, f), getattr(other, f)
                if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                    if not np.array_equal(a, b):
                        return False
                elif a != b:
                    return False
            return True

        def __repr__(self):
            return f"{typename.replace('/', '.')}({', '.join(f'{f}={getattr(self, f)!r}' for f in fields)})"

        ns: dict[str, Any] = {
            "__slots__": tuple("_" + f for f in fields),
            "__init__": __init__,
            "__eq__": __eq__,
            "__repr__": __repr__,
            "_TYPE_NAME": typename,
            "_fields_and_field_types": {f: typename for f in fields},
            "get_fields_and_field_types": classmethod(lambda c: dict(c._fields_and_field_types)),
        }
        for cname, _ctype, cvalue in consts:
            ns[cname] = cvalue
        for f, kind in fields.items():
            ns[f] = property(
                lambda self, f=f: getattr(self, "_" + f),
                lambda self, v, f=f, k=kind: setattr(self, "_" + f, interfaces.check(typename, f, k, v)),
            )
        pkg, sub, name = typename.split("/")
        cls = _Meta(name, (), ns)
        cls.__module__ = f"{pkg}.{sub}._{name.lower()}"
        self.classes[typename] = cls
        # rosidl's type strings for get_fields_and_field_types (what RclpyFactory reads)
        cls._fields_and_field_types = {f: self.idl(k) for f, k in fields.items()}
        return cls

    def idl(self, kind: tuple) -> str:
        k, d = kind
        base = {"float32": "float", "float64": "double", "bool": "boolean", "byte": "octet"}
        if k == "prim":
            return base.get(d, d)
        if k == "str":
            return f"string<{d}>" if d else "string"
        if k == "msg":
            pkg, _, name = d.split("/")
            return f"{pkg}/{name}"
        inner, n = d
        if k == "arr":
            return f"{self.idl(inner)}[{n}]"
        return f"sequence<{self.idl(inner)}, {n}>" if n else f"sequence<{self.idl(inner)}>"

    def cls(self, typename: str) -> type:
        if typename not in self.classes:
            consts, fields = self.store.fielddefs[typename]
            self.make(typename, fields, consts)
        return self.classes[typename]

    def default(self, kind: tuple) -> Any:
        k, d = kind
        if k == "prim":
            if d == "bool":
                return False
            if d in ("byte", "octet"):
                return b"\x00"
            return 0.0 if d in _FLOATS else 0
        if k == "str":
            return ""
        if k == "msg":
            return self.cls(d)()
        inner, n = d
        if k == "arr":
            if inner[0] == "prim" and inner[1] in _CODES:
                return np.zeros(n, _DTYPES[inner[1]])
            return [self.default(inner) for _ in range(n)]
        if inner[0] == "prim" and inner[1] in _CODES:
            return array.array(_CODES[inner[1]])
        return []

    def check(self, typename: str, field: str, kind: tuple, value: Any) -> Any:
        """rosidl_generator_py's setter assertions; returns the stored value (lists become arrays)."""
        where = f"The '{field}' field of {typename} must be"
        k, d = kind
        if k == "prim":
            if d == "bool":
                assert isinstance(value, bool), f"{where} of type 'bool'"
            elif d in ("byte", "octet"):
                assert isinstance(value, bytes) and len(value) == 1, f"{where} of type 'bytes' length 1"
            elif d in _FLOATS:
                assert isinstance(value, float), f"{where} of type 'float'"
                if d == "float32" and np.isfinite(value):
                    assert abs(value) <= 3.402823466e38, f"{where} a float in [-3.4e38, 3.4e38]"
            else:
                lo, hi = _INT_RANGES[d]
                assert isinstance(value, int), f"{where} of type 'int'"
                assert lo <= value <= hi, f"{where} an integer in [{lo}, {hi}]"
            return value
        if k == "str":
            assert isinstance(value, str), f"{where} of type 'str'"
            assert not d or len(value) <= d, f"{where} a string of at most {d} characters"
            return value
        if k == "msg":
            assert isinstance(value, self.cls(d)), f"{where} a sub message of type '{d}'"
            return value
        inner, n = d
        numeric = inner[0] == "prim" and inner[1] in _CODES
        if k == "arr" and numeric and isinstance(value, np.ndarray):
            assert value.dtype == _DTYPES[inner[1]], f"{where} a numpy array with dtype {_DTYPES[inner[1]]}"
            assert value.size == n, f"{where} a numpy array of size {n}"
            return value
        if k == "seq" and numeric and isinstance(value, array.array):
            assert value.typecode == _CODES[inner[1]], (
                f"{where} an array.array of type code '{_CODES[inner[1]]}'"
            )
            assert not n or len(value) <= n, f"{where} at most {n} elements"
            return value
        assert isinstance(value, Sequence) and not isinstance(value, (str, bytes)), (
            f"{where} a set or sequence (got {type(value).__name__})"
        )
        if k == "arr":
            assert len(value) == n, f"{where} of length {n}"
        else:
            assert not n or len(value) <= n, f"{where} at most {n} elements"
        checked = [self.check(typename, field, inner, v) for v in value]
        if numeric:
            return (
                np.array(checked, _DTYPES[inner[1]]) if k == "arr" else array.array(_CODES[inner[1]], checked)
            )
        return checked


_DTYPES = {t: np.dtype(c) for t, c in _CODES.items() if t != "char"} | {"char": np.dtype("u1")}


def install_interfaces(store, monkeypatch=None) -> Interfaces:
    """Message modules (``sensor_msgs.msg`` …) and the parameter services into ``sys.modules``."""
    from rosbags.typesys import get_types_from_msg

    gen = Interfaces(store)
    modules: dict[str, types.ModuleType] = {}

    def module(name: str) -> types.ModuleType:
        if name not in modules:
            modules[name] = types.ModuleType(name)
            modules[name].__path__ = []  # a package, so "pkg.msg" imports
        return modules[name]

    for typename in store.fielddefs:
        pkg, sub, name = typename.split("/")
        if sub == "msg":
            setattr(module(f"{pkg}.msg"), name, gen.cls(typename))
            module(pkg).msg = module(f"{pkg}.msg")
    for srv, (req, resp) in SERVICES.items():
        pkg, _, name = srv.split("/")
        defs = {}
        for part, text in (("Request", req), ("Response", resp)):
            ((consts, fields),) = get_types_from_msg(text, f"{pkg}/msg/{name}_{part}").values()
            defs[part] = (consts, fields)
        nested = {info for _, fields in defs.values() for _f, (nt, info) in fields if int(nt) == 2}
        if not nested <= set(store.fielddefs):
            continue  # a service of a later distro (its messages are not in this typestore)
        parts = {part: gen.make(f"{pkg}/srv/{name}_{part}", f, c) for part, (c, f) in defs.items()}
        srv_cls = _Meta(
            name, (), {"Request": parts["Request"], "Response": parts["Response"], "_TYPE_NAME": srv}
        )
        setattr(module(f"{pkg}.srv"), name, srv_cls)
        module(pkg).srv = module(f"{pkg}.srv")
    for name, mod in modules.items():
        if monkeypatch is not None:
            monkeypatch.setitem(sys.modules, name, mod)
        else:
            sys.modules[name] = mod
    gen.module_names = set(modules)
    return gen


def uninstall(interfaces: Interfaces) -> None:
    """Take rclpy, its stand-in and the generated message modules out of ``sys.modules`` (and only
    them: torch and friends must never be re-imported in one process)."""
    ours = interfaces.module_names | {"rpyutils", "rclpy_standin_ament"}
    for name in list(sys.modules):
        if name == "rclpy" or name.startswith("rclpy.") or name in ours:
            del sys.modules[name]
    if getattr(sys.modules.get("ament_index_python"), "__file__", None) is None:
        sys.modules.pop("ament_index_python", None)


# -- rcl's parameter files and arguments ------------------------------------------------------------


class ArgumentError(ValueError):
    pass


class ParamRule(NamedTuple):
    """A ``-p [node:]name:=value`` rule: rcl puts it under node key ``node`` (``/**`` without one)."""

    node: str
    name: str
    value: Any


def parse_ros_args(args: list[str]) -> dict[str, Any]:
    """The ``--ros-args`` part of a command line as rcl reads it (the subset launch_ros writes).
    ``params``: every ``--params-file`` (its path) and ``-p`` (a :class:`ParamRule`) in command-line
    order, which is the order rcl merges them in (:func:`node_parameters`)."""
    out: dict[str, Any] = {"params": [], "remaps": {}}
    ros = False
    it = iter(args)
    for a in it:
        if a == "--ros-args":
            ros = True
        elif a == "--":
            ros = False
        elif ros and a == "--params-file":
            out["params"].append(next(it))
        elif ros and a in ("-p", "--param"):
            # rcl's _rcl_parse_param_rule: an optional 'node:' prefix, the name, ':=', the value
            rule, _, value = next(it).partition(":=")
            node, _, name = rule.rpartition(":")
            out["params"].append(ParamRule(node or "/**", name, rcl_yaml(value)))
        elif ros and a in ("-r", "--remap"):
            src, _, dst = next(it).partition(":=")
            out["remaps"][src] = dst
        elif ros and a in ("--log-level", "-e", "--enclave"):
            next(it)
    return out


def _flatten(prefix: str, value: Any, out: dict[str, Any], where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out, where)
        return
    if isinstance(value, list):
        kinds = {type(v) for v in value}
        if len(kinds) > 1:  # rcl: "Sequence should be of same type"
            raise ArgumentError(f"{where}: parameter {prefix}: sequence should be of same type")
    out[prefix] = value


def node_parameters(sources: list[str | ParamRule], fqn: str) -> dict[str, Any]:
    """Parameter overrides of node ``fqn`` from one command line's params files and ``-p`` rules
    (:func:`parse_ros_args`), combined as rcl and rclpy do: rcl (arguments.c) merges every source
    into ONE list of node-key entries, a key seen again (as written: ``/n`` and ``n`` are two) reusing
    its entry where it first appeared, a new key appended, a parameter set again overwritten in its
    entry; rclpy (node.cpp _populate_node_parameters_from_rcl_params) then applies the entries that
    match ``fqn`` in that order, a later entry winning. A node's own key has no precedence over
    ``/**``: only the place where each key first appeared counts."""
    entries: dict[str, dict[str, Any]] = {}
    for source in sources:
        if isinstance(source, ParamRule):
            _flatten(source.name, source.value, entries.setdefault(source.node, {}), "-p")
            continue
        # rcl's file rules (layout, key matching, value types) are the suite's own reading of them:
        # gs_mapping.config_file, checked against rcl's rules in test_outside_ros2_nodes.py
        for key, entry in parameter_entries(source):
            _flatten("", entry, entries.setdefault(key, {}), source)
    out: dict[str, Any] = {}
    for key, params in entries.items():
        if node_key_matches(key, fqn):
            out.update(params)
    return out


# -- the stand-in C extension ------------------------------------------------------------------------


class _Handle:
    """pybind11 Destroyable: a context manager with a pointer."""

    _next = 1

    def __init__(self):
        self.pointer = _Handle._next
        _Handle._next += 1
        self.destroyed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def destroy_when_not_in_use(self):
        self.destroyed = True


class Bus:
    """What the middleware does, for every context of the process."""

    def __init__(self):
        self.lock = threading.RLock()
        self.publishers: list[Any] = []
        self.subscriptions: list[Any] = []
        self.services: list[Any] = []
        self.wake = threading.Condition(self.lock)

    def notify(self):
        with self.wake:
            self.wake.notify_all()


BUS = Bus()


def _compatible(pub_qos, sub_qos) -> bool:
    # reliability: 1 RELIABLE, 2 BEST_EFFORT; durability: 1 TRANSIENT_LOCAL, 2 VOLATILE
    if int(sub_qos.reliability) == 1 and int(pub_qos.reliability) == 2:
        return False
    if int(sub_qos.durability) == 1 and int(pub_qos.durability) == 2:
        return False
    return True


def _wire_typename(msg_type) -> str:
    return msg_type._TYPE_NAME


def _serialize(msg, typename: str) -> bytes:
    from gs_mapping.messages import serialize_cdr

    return serialize_cdr(msg, typename)


class StandIn(types.ModuleType):
    """``rclpy._rclpy_pybind11`` in Python. Attribute names and signatures follow rclpy's pybind11
    module (humble and jazzy); behaviour is the in-process model described in the module docstring."""

    def __init__(self, interfaces: Interfaces):
        super().__init__("rclpy._rclpy_pybind11")
        m = self
        m.interfaces = interfaces
        m.RCL_DEFAULT_DOMAIN_ID = 0
        m.RMW_DURATION_INFINITE = 9223372036854775807
        m.RMW_QOS_DEADLINE_BEST_AVAILABLE = m.RMW_QOS_LIVELINESS_LEASE_DURATION_BEST_AVAILABLE = (
            9223372036854775806
        )
        m.ClockType = IntEnum(
            "ClockType", {"UNINITIALIZED": 0, "ROS_TIME": 1, "SYSTEM_TIME": 2, "STEADY_TIME": 3}
        )
        m.ClockChange = IntEnum(
            "ClockChange",
            {
                "ROS_TIME_NO_CHANGE": 1,
                "ROS_TIME_ACTIVATED": 2,
                "ROS_TIME_DEACTIVATED": 3,
                "SYSTEM_TIME_NO_CHANGE": 4,
            },
        )
        m.SignalHandlerOptions = IntEnum(
            "SignalHandlerOptions", {"NO": 0, "SIGINT": 1, "SIGTERM": 2, "ALL": 3}
        )
        m.RCUTILS_LOG_SEVERITY = IntEnum(
            "RCUTILS_LOG_SEVERITY",
            {
                "RCUTILS_LOG_SEVERITY_UNSET": 0,
                "RCUTILS_LOG_SEVERITY_DEBUG": 10,
                "RCUTILS_LOG_SEVERITY_INFO": 20,
                "RCUTILS_LOG_SEVERITY_WARN": 30,
                "RCUTILS_LOG_SEVERITY_ERROR": 40,
                "RCUTILS_LOG_SEVERITY_FATAL": 50,
            },
        )
        m.QoSCompatibility = IntEnum("QoSCompatibility", {"OK": 0, "WARNING": 1, "ERROR": 2})
        m.TransitionCallbackReturnType = IntEnum(
            "TransitionCallbackReturnType", {"SUCCESS": 97, "FAILURE": 98, "ERROR": 99}
        )
        m.GoalEvent = IntEnum(
            "GoalEvent", {"EXECUTE": 0, "CANCEL_GOAL": 1, "SUCCEED": 2, "ABORT": 3, "CANCELED": 4}
        )
        sub_events = (
            "REQUESTED_DEADLINE_MISSED",
            "LIVELINESS_CHANGED",
            "REQUESTED_INCOMPATIBLE_QOS",
            "MESSAGE_LOST",
        )
        pub_events = ("OFFERED_DEADLINE_MISSED", "LIVELINESS_LOST", "OFFERED_INCOMPATIBLE_QOS")
        for name, prefix, events in (
            ("rcl_subscription_event_type_t", "RCL_SUBSCRIPTION_", sub_events),
            ("rcl_publisher_event_type_t", "RCL_PUBLISHER_", pub_events),
        ):
            events = (*events, "INCOMPATIBLE_TYPE", "MATCHED")
            setattr(m, name, IntEnum(name, {prefix + e: i for i, e in enumerate(events)}))
        for err in ("RCLError", "InvalidHandle", "NodeNameNonExistentError", "UnsupportedEventTypeError"):
            setattr(m, err, type(err, (RuntimeError,), {}))
        for name in (
            "rmw_requested_deadline_missed_status_t",
            "rmw_liveliness_changed_status_t",
            "rmw_requested_qos_incompatible_event_status_t",
            "rmw_message_lost_status_t",
            "rmw_offered_deadline_missed_status_t",
            "rmw_liveliness_lost_status_t",
            "rmw_incompatible_type_status_t",
            "rmw_matched_status_t",
            "rmw_service_info_t",
        ):
            setattr(m, name, type(name, (), {}))
        m.rmw_request_id_t = type(
            "rmw_request_id_t", (), {"__init__": lambda s, seq=0: setattr(s, "sequence_number", seq)}
        )
        m.service_introspection = types.SimpleNamespace(
            ServiceIntrospectionState=IntEnum(
                "ServiceIntrospectionState", {"OFF": 0, "METADATA": 1, "CONTENTS": 2}
            )
        )
        self._define_types()

    # -- values ---------------------------------------------------------------------------------------
    def _define_types(self):
        m = self

        class rcl_duration_t:
            def __init__(self, nanoseconds=0):
                self.nanoseconds = int(nanoseconds)

        class rcl_time_point_t:
            def __init__(self, nanoseconds=0, clock_type=m.ClockType.SYSTEM_TIME):
                self.nanoseconds = int(nanoseconds)
                self.clock_type = clock_type

        class rmw_qos_profile_t:
            _PREDEFINED = {  # rmw/qos_profiles.h: history, depth, reliability, durability
                "qos_profile_default": (1, 10, 1, 2),
                "qos_profile_system_default": (0, 0, 0, 0),
                "qos_profile_sensor_data": (1, 5, 2, 2),
                "qos_profile_services_default": (1, 10, 1, 2),
                "qos_profile_unknown": (3, 0, 3, 3),
                "qos_profile_parameters": (1, 1000, 1, 2),
                "qos_profile_parameter_events": (1, 1000, 1, 2),
                "rcl_action_qos_profile_status_default": (1, 1, 1, 1),
                "qos_profile_best_available": (1, 10, 4, 4),  # jazzy
                "qos_profile_rosout_default": (1, 1000, 1, 1),  # jazzy
            }

            def __init__(
                self,
                history,
                depth,
                reliability,
                durability,
                lifespan=None,
                deadline=None,
                liveliness=0,
                liveliness_lease_duration=None,
                avoid_ros_namespace_conventions=False,
            ):
                self.history, self.depth = int(history), int(depth)
                self.reliability, self.durability = int(reliability), int(durability)
                self.lifespan, self.deadline = lifespan, deadline
                self.liveliness, self.liveliness_lease_duration = int(liveliness), liveliness_lease_duration
                self.avoid_ros_namespace_conventions = avoid_ros_namespace_conventions

            @staticmethod
            def predefined(name):
                h, d, r, du = rmw_qos_profile_t._PREDEFINED[name]
                return rmw_qos_profile_t(h, d, r, du)

            def to_dict(self):
                from rclpy.duration import Duration

                return {
                    "history": self.history,
                    "depth": self.depth,
                    "reliability": self.reliability,
                    "durability": self.durability,
                    "lifespan": Duration(),
                    "deadline": Duration(),
                    "liveliness": self.liveliness,
                    "liveliness_lease_duration": Duration(),
                    "avoid_ros_namespace_conventions": self.avoid_ros_namespace_conventions,
                }

        m.rcl_duration_t, m.rcl_time_point_t, m.rmw_qos_profile_t = (
            rcl_duration_t,
            rcl_time_point_t,
            rmw_qos_profile_t,
        )
        m.rclpy_action_get_rmw_qos_profile = lambda name: rmw_qos_profile_t.predefined(name).to_dict()

        def qos_check(pub, sub):
            ok = _compatible(pub, sub)
            return types.SimpleNamespace(compatibility=0 if ok else 2, reason="" if ok else "incompatible")

        m.rclpy_qos_check_compatible = qos_check

        class ClockEvent:
            def __init__(self):
                self._ev = threading.Event()

            def wait_until_steady(self, clock, until):
                self._ev.wait(max(0.0, (until.nanoseconds - time.monotonic_ns()) / 1e9))

            def wait_until_system(self, clock, until):
                self._ev.wait(max(0.0, (until.nanoseconds - time.time_ns()) / 1e9))

            def wait_until_ros(self, clock, until):
                self._ev.wait(0.01)

            def is_set(self):
                return self._ev.is_set()

            def set(self):
                self._ev.set()

            def clear(self):
                self._ev.clear()

        m.ClockEvent = ClockEvent

        class Clock(_Handle):
            """rcl time.c: a ROS clock's override starts at 0; every change of it or of its
            activation calls the jump callbacks whose threshold it reaches, before and after."""

            def __init__(self, clock_type):
                super().__init__()
                self.clock_type = m.ClockType(int(clock_type))
                self._override = 0
                self._override_enabled = False
                self._callbacks = []  # [callback(jump, before), on_clock_change, min_forward, min_backward]

            def get_now(self):
                if self.clock_type == m.ClockType.ROS_TIME and self._override_enabled:
                    ns = self._override
                elif self.clock_type == m.ClockType.STEADY_TIME:
                    ns = time.monotonic_ns()
                else:
                    ns = time.time_ns()
                return rcl_time_point_t(ns, self.clock_type)

            def get_ros_time_override_is_enabled(self):
                return self._override_enabled

            def _call_callbacks(self, change, delta, before):  # rcl_clock_call_callbacks
                is_change = change in (m.ClockChange.ROS_TIME_ACTIVATED, m.ClockChange.ROS_TIME_DEACTIVATED)
                jump = {"clock_change": change, "delta": delta}
                for callback, on_change, forward, backward in list(self._callbacks):
                    if (
                        (is_change and on_change)
                        or (backward < 0 and delta <= backward)
                        or (forward > 0 and delta >= forward)
                    ):
                        callback(jump, before)

            def set_ros_time_override_is_enabled(self, enabled):  # rcl_enable/disable_ros_time_override
                if bool(enabled) != self._override_enabled:
                    change = (
                        m.ClockChange.ROS_TIME_ACTIVATED if enabled else m.ClockChange.ROS_TIME_DEACTIVATED
                    )
                    self._call_callbacks(change, 0, True)
                    self._override_enabled = bool(enabled)
                    self._call_callbacks(change, 0, False)

            def set_ros_time_override(self, tp):  # rcl_set_ros_time_override
                active, delta = self._override_enabled, tp.nanoseconds - self._override
                if active:
                    self._call_callbacks(m.ClockChange.ROS_TIME_NO_CHANGE, delta, True)
                self._override = tp.nanoseconds
                if active:
                    self._call_callbacks(m.ClockChange.ROS_TIME_NO_CHANGE, delta, False)

            def add_jump_callback(self, callback, on_clock_change, min_forward, min_backward):
                self._callbacks.append([callback, on_clock_change, min_forward, min_backward])

            def add_clock_callback(self, handle, on_clock_change, min_forward, min_backward):
                def call(jump, before):  # rclpy's _rclpy_on_time_jump (clock.cpp)
                    if before:
                        if handle._pre_callback is not None:
                            handle._pre_callback()
                    elif handle._post_callback is not None:
                        handle._post_callback(jump)

                call.handle = handle
                self.add_jump_callback(call, on_clock_change, min_forward, min_backward)

            def remove_clock_callback(self, handle):
                self._callbacks = [c for c in self._callbacks if getattr(c[0], "handle", None) is not handle]

        m.Clock = Clock

        class Context(_Handle):
            def __init__(self, args, domain_id):
                super().__init__()
                self.args = list(args or [])
                self.ros = parse_ros_args(self.args)
                self._ok = True
                self.domain_id = domain_id

            def ok(self):
                return self._ok

            def shutdown(self):
                self._ok = False
                BUS.notify()

            def get_domain_id(self):
                return self.domain_id

        m.Context = Context

        class GuardCondition(_Handle):
            def __init__(self, context):
                super().__init__()
                self.triggered = False

            def trigger_guard_condition(self):
                self.triggered = True
                BUS.notify()

        m.GuardCondition = GuardCondition

        class Node(_Handle):
            def __init__(
                self, name, namespace, context, cli_args, use_global_arguments, enable_rosout, *rest
            ):
                super().__init__()
                from rclpy.validate_namespace import validate_namespace
                from rclpy.validate_node_name import validate_node_name

                ros = parse_ros_args(list(cli_args or []))
                glob = context.ros if use_global_arguments else {"params": [], "remaps": {}}
                remaps = {**glob["remaps"], **ros["remaps"]}
                name = remaps.get("__node", remaps.get("__name", name))
                namespace = remaps.get("__ns", namespace) or "/"
                namespace = namespace if namespace.startswith("/") else "/" + namespace
                try:
                    validate_node_name(name)
                    validate_namespace(namespace)
                except Exception:
                    raise ValueError(name) from None
                self.name, self.namespace, self.context = name, namespace, context
                self.remaps = {k: v for k, v in remaps.items() if not k.startswith("__")}
                fqn = namespace.rstrip("/") + "/" + name
                # rclpy (node.cpp Node::get_parameters): the global arguments' overrides, then the
                # node's own arguments' over them (each command line merged as rcl merges it)
                self.params = {**node_parameters(glob["params"], fqn), **node_parameters(ros["params"], fqn)}

            def logger_name(self):
                return (self.namespace.strip("/").replace("/", ".") + "." + self.name).lstrip(".")

            def get_node_name(self):
                return self.name

            def get_namespace(self):
                return self.namespace

            def get_fully_qualified_name(self):
                return self.namespace.rstrip("/") + "/" + self.name

            def get_parameters(self, parameter_cls):
                return {k: parameter_cls(k, value=v) for k, v in self.params.items()}

            def resolve(self, topic, only_expand=False):
                if topic.startswith("~"):
                    topic = self.get_fully_qualified_name() + topic[1:]
                elif not topic.startswith("/"):
                    topic = self.namespace.rstrip("/") + "/" + topic
                if not only_expand:
                    topic = self.remaps.get(topic, topic)
                return topic

            def get_count_publishers(self, topic):
                with BUS.lock:
                    return sum(p.topic == topic and not p.destroyed for p in BUS.publishers)

            def get_count_subscribers(self, topic):
                with BUS.lock:
                    return sum(s.topic == topic and not s.destroyed for s in BUS.subscriptions)

            def get_node_names_and_namespaces(self):
                return []

        m.Node = Node
        m.rclpy_resolve_name = lambda node, topic, only_expand, is_service: node.resolve(topic, only_expand)
        m.rclpy_remap_topic_name = lambda node, topic: node.resolve(topic)
        m.rclpy_expand_topic_name = lambda topic, node_name, ns: Node.resolve(
            types.SimpleNamespace(
                get_fully_qualified_name=lambda: ns.rstrip("/") + "/" + node_name, namespace=ns, remaps={}
            ),
            topic,
            True,
        )

        class Publisher(_Handle):
            def __init__(self, node, msg_type, topic, qos, *rest):
                super().__init__()
                self.node, self.msg_type, self.qos = node, msg_type, qos
                self.topic = node.resolve(topic)
                self.typename = _wire_typename(msg_type)
                self.history: deque = deque(maxlen=max(1, qos.depth))
                with BUS.lock:
                    BUS.publishers.append(self)

            def publish(self, msg):
                if not isinstance(msg, self.msg_type):
                    raise TypeError(f"expected {self.msg_type}, got {type(msg)}")
                data = _serialize(msg, self.typename)
                with BUS.lock:
                    if int(self.qos.durability) == 1:
                        self.history.append(data)
                    for sub in BUS.subscriptions:
                        if sub.matches(self):
                            sub.push(data)
                BUS.notify()

            def get_subscription_count(self):
                with BUS.lock:
                    return sum(s.matches(self) for s in BUS.subscriptions)

            def get_topic_name(self):
                return self.topic

            def get_logger_name(self):
                return self.node.logger_name()

            def destroy_when_not_in_use(self):
                super().destroy_when_not_in_use()
                with BUS.lock:
                    BUS.publishers.remove(self)

        m.Publisher = Publisher

        class Subscription(_Handle):
            def __init__(self, node, msg_type, topic, qos, *rest):
                super().__init__()
                self.node, self.msg_type, self.qos = node, msg_type, qos
                self.topic = node.resolve(topic)
                self.typename = _wire_typename(msg_type)
                self.queue: deque = deque(maxlen=max(1, qos.depth))
                with BUS.lock:
                    BUS.subscriptions.append(self)
                    if int(qos.durability) == 1:  # late joiner: transient-local history of each writer
                        for pub in BUS.publishers:
                            if self.matches(pub):
                                self.queue.extend(pub.history)

            def matches(self, pub) -> bool:
                return (
                    not self.destroyed
                    and pub.topic == self.topic
                    and pub.typename == self.typename
                    and _compatible(pub.qos, self.qos)
                    and pub.node.context.ok()
                    and self.node.context.ok()
                )

            def push(self, data):
                self.queue.append(data)

            def ready(self):
                return bool(self.queue)

            def take_message(self, msg_type, raw):
                from gs_mapping.messages import RclpyFactory, convert_message, deserialize_cdr

                with BUS.lock:
                    if not self.queue:
                        return None
                    data = self.queue.popleft()
                if raw:
                    return data, {}
                msg = convert_message(deserialize_cdr(data, self.typename), self.typename, RclpyFactory())
                assert isinstance(msg, msg_type)
                return msg, {"source_timestamp": 0, "received_timestamp": time.time_ns()}

            def get_topic_name(self):
                return self.topic

            def get_logger_name(self):
                return self.node.logger_name()

            def get_publisher_count(self):
                with BUS.lock:
                    return sum(self.matches(p) for p in BUS.publishers)

            def destroy_when_not_in_use(self):
                super().destroy_when_not_in_use()
                with BUS.lock:
                    BUS.subscriptions.remove(self)

        m.Subscription = Subscription

        class Service(_Handle):
            def __init__(self, node, srv_type, name, qos, *rest):
                super().__init__()
                self.node, self.srv_type = node, srv_type
                self.name = node.resolve(name)
                self.requests: deque = deque()
                self.responses: dict[int, Any] = {}
                self._seq = 0
                with BUS.lock:
                    BUS.services.append(self)

            @property
            def service_name(self):
                return self.name

            def call(self, request):
                """What a client's request does: queued for the service's executor."""
                assert isinstance(request, self.srv_type.Request)
                with BUS.lock:
                    self._seq += 1
                    self.requests.append((self._seq, request))
                BUS.notify()
                return self._seq

            def ready(self):
                return bool(self.requests)

            def service_take_request(self, request_cls):
                with BUS.lock:
                    if not self.requests:
                        return None
                    seq, req = self.requests.popleft()
                return req, m.rmw_request_id_t(seq)

            def service_send_response(self, response, header):
                self.responses[header.sequence_number] = response

            def destroy_when_not_in_use(self):
                super().destroy_when_not_in_use()
                with BUS.lock:
                    BUS.services.remove(self)

        m.Service = Service

        class TypeDescriptionService(_Handle):
            def __init__(self, node, *rest):
                super().__init__()
                self.impl = Service(
                    node,
                    importlib.import_module("type_description_interfaces.srv").GetTypeDescription,
                    "~/get_type_description",
                    None,
                )

            @property
            def service(self):
                return self.impl

            def handle_request(self, request, response_cls, node):
                return response_cls(successful=False, failure_reason="not in the stand-in")

        m.TypeDescriptionService = TypeDescriptionService

        class Timer(_Handle):
            """rcl timer.c: next call one period after the last, missed periods skipped; on a ROS
            clock the time-jump rule of ``_rcl_timer_time_jump`` (a jump back past the last call:
            next call one period after the jump; ROS time (de)activated: the rest of the period)."""

            def __init__(self, clock, context, period_ns, autostart=True, *rest):
                super().__init__()
                self.clock, self.context, self.period = clock, context, int(period_ns)
                self.canceled = not autostart
                self.last = self._now()
                self.next, self.credit = self.last + self.period, 0
                if clock.clock_type == m.ClockType.ROS_TIME:
                    clock.add_jump_callback(self._jumped, True, 1, -1)

            def _now(self):
                return self.clock.get_now().nanoseconds

            def _jumped(self, jump, before):
                now = self._now()
                change = jump["clock_change"] in (
                    m.ClockChange.ROS_TIME_ACTIVATED,
                    m.ClockChange.ROS_TIME_DEACTIVATED,
                )
                if before:
                    if change and not self.canceled:
                        self.credit = self.next - now
                elif change:
                    credit, self.credit = self.credit, 0
                    if now != 0 and not self.canceled and credit:
                        self.next, self.last = now - credit + self.period, now - credit
                elif self.next > now and now < self.last:
                    self.next, self.last = now + self.period, now

            def is_timer_ready(self):
                return not self.canceled and self.next - self._now() <= 0

            def call_timer(self):
                now, expected = self._now(), self.next
                self.last, self.next = now, self.next + self.period
                if self.next < now:  # missed periods: the next call a whole number of periods on
                    ahead = now - self.next
                    self.next = (
                        now if not self.period else self.next + (1 + (ahead - 1) // self.period) * self.period
                    )
                return expected, now

            def call_timer_with_info(self):
                expected, now = self.call_timer()
                return {"expected_call_time": expected, "actual_call_time": now}

            def get_timer_period(self):
                return self.period

            def change_timer_period(self, val):  # rcl_timer_exchange_period: the next call stays
                self.period = int(val)

            def is_timer_canceled(self):
                return self.canceled

            def cancel_timer(self):
                self.canceled = True

            def reset_timer(self):
                self.canceled = False
                self.next = self._now() + self.period

            def time_since_last_call(self):
                return self._now() - self.last

            def time_until_next_call(self):
                return None if self.canceled else max(0, self.next - self._now())

            def destroy_when_not_in_use(self):  # rcl_timer_fini: its jump callback goes
                self.clock._callbacks = [c for c in self.clock._callbacks if c[0] != self._jumped]
                super().destroy_when_not_in_use()

        m.Timer = Timer

        class WaitSet(_Handle):
            def __init__(self, *counts_and_context):
                super().__init__()
                self.context = counts_and_context[-1]
                self.clear_entities()

            def clear_entities(self):
                self.entities = {
                    k: [] for k in ("subscription", "guard_condition", "timer", "client", "service", "event")
                }
                self.ready = {k: [] for k in self.entities}

            def add_subscription(self, h):
                self.entities["subscription"].append(h)

            def add_guard_condition(self, h):
                self.entities["guard_condition"].append(h)

            def add_timer(self, h):
                self.entities["timer"].append(h)

            def add_client(self, h):
                self.entities["client"].append(h)

            def add_service(self, h):
                self.entities["service"].append(h)

            def add_event(self, h):
                self.entities["event"].append(h)

            def add_entity(self, kind, h):
                self.entities[kind].append(h)

            def _scan(self):
                r = self.ready
                r["subscription"] = [h.pointer for h in self.entities["subscription"] if h.ready()]
                r["service"] = [h.pointer for h in self.entities["service"] if h.ready()]
                r["timer"] = [h.pointer for h in self.entities["timer"] if h.is_timer_ready()]
                r["guard_condition"] = []
                for h in self.entities["guard_condition"]:
                    if h.triggered:
                        h.triggered = False
                        r["guard_condition"].append(h.pointer)
                return any(r.values())

            def _next_timer_s(self):
                left = [h.time_until_next_call() for h in self.entities["timer"]]
                left = [t for t in left if t is not None]
                return min(left) / 1e9 if left else None

            def wait(self, timeout_ns):
                deadline = (
                    None if timeout_ns is None or timeout_ns < 0 else time.monotonic() + timeout_ns / 1e9
                )
                with BUS.wake:
                    while not self._scan() and self.context.ok():
                        left = None if deadline is None else deadline - time.monotonic()
                        if left is not None and left <= 0:
                            return
                        t = self._next_timer_s()
                        step = min(x for x in (left, t, 0.05) if x is not None)
                        BUS.wake.wait(max(step, 0.0005))

            def get_ready_entities(self, kind):
                return list(self.ready[kind])

            def is_ready(self, kind, index):
                return self.entities[kind][index].pointer in self.ready[kind]

        m.WaitSet = WaitSet

        # signals, logging, validation
        m.install_signal_handlers = lambda *a: None
        m.uninstall_signal_handlers = lambda *a: None
        m.get_current_signal_handlers_options = lambda: m.SignalHandlerOptions.NO
        m.register_sigint_guard_condition = lambda *a: None
        m.unregister_sigint_guard_condition = lambda *a: None
        m.rclpy_ok = lambda ctx: ctx.ok()
        m.rclpy_init = lambda *a: None
        levels: dict[str, int] = {}
        m.rclpy_logging_initialize = lambda *a: None
        m.rclpy_logging_configure = lambda *a: None
        m.rclpy_logging_shutdown = lambda *a: None
        m.rclpy_logging_get_logging_directory = lambda: str(Path(os.environ.get("ROS_LOG_DIR", "/tmp")))
        m.rclpy_logging_get_separator_string = lambda: "."
        m.rclpy_logging_rosout_add_sublogger = lambda *a: True
        m.rclpy_logging_rosout_remove_sublogger = lambda *a: None
        m.rclpy_logging_set_logger_level = lambda name, level, *a: levels.__setitem__(name, int(level))
        m.rclpy_logging_get_logger_level = lambda name: levels.get(name, 0)

        def effective(name):
            while name:
                if name in levels and levels[name]:
                    return levels[name]
                name = name.rpartition(".")[0]
            return levels.get("", 20) or 20

        m.rclpy_logging_get_logger_effective_level = effective
        m.rclpy_logging_logger_is_enabled_for = lambda name, severity: int(severity) >= effective(name)
        sev = {"debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "fatal": 50, "unset": 0}
        m.rclpy_logging_severity_level_from_string = lambda s: sev[s.lower()]

        def rcutils_log(severity, name, message, function_name, file_path, line_number):
            if not isinstance(message, str):
                raise TypeError(f"message must be a str, got {type(message).__name__}")
            LOG.append((int(severity), name, message))
            logging.getLogger(f"ros.{name}").log(int(severity), message)

        m.rclpy_logging_rcutils_log = rcutils_log

        def validation(kind):
            def check(name):
                return None

            return check

        for kind in ("topic_name", "node_name", "namespace", "full_topic_name"):
            setattr(m, f"rclpy_get_validation_error_for_{kind}", validation(kind))
        m.rclpy_assert_liveliness = lambda *a: None
        m.rclpy_logging_fini = lambda *a: None
        m.rclpy_get_rmw_implementation_identifier = lambda: "rmw_standin"

        def remove_ros_args(args):
            out, ros = [], False
            for a in args:
                if a == "--ros-args":
                    ros = True
                elif a == "--":
                    ros = False
                elif not ros:
                    out.append(a)
            return out

        m.rclpy_remove_ros_args = remove_ros_args

        def not_modelled(name):
            def __init__(self, *a, **k):
                raise NotImplementedError(f"{name} is not modelled by the rclpy stand-in")

            return type(name, (_Handle,), {"__init__": __init__})

        for name in ("Client", "ActionClient", "ActionServer", "ActionGoalHandle", "LifecycleStateMachine"):
            setattr(m, name, not_modelled(name))

        def no_events(*a, **k):  # rclpy skips an event handler whose type the rmw does not support
            raise m.UnsupportedEventTypeError("QoS events are not modelled by the rclpy stand-in")

        m.QoSEvent = m.EventHandle = no_events
        m.rclpy_serialize = lambda msg, msg_type: _serialize(msg, _wire_typename(msg_type))
        m.rclpy_deserialize = lambda data, msg_type: Subscription.take_message(
            types.SimpleNamespace(queue=deque([data]), typename=_wire_typename(msg_type)), msg_type, False
        )[0]


def install(store, rclpy_source: str | None = None):
    """Put the stand-in under rclpy and import rclpy (from site-packages, or ``rclpy_source``).

    Returns ``(rclpy, standin, interfaces)``. Call in a fresh interpreter or once per process:
    rclpy keeps module-level state (the default context, QoS profiles) like the real one."""
    interfaces = install_interfaces(store)
    standin = StandIn(interfaces)
    if rclpy_source:
        sys.path.insert(0, str(Path(rclpy_source).parent))
    sys.modules["rclpy._rclpy_pybind11"] = standin
    singleton = types.ModuleType("rclpy.impl.implementation_singleton")
    singleton.rclpy_implementation = standin
    sys.modules["rclpy.impl.implementation_singleton"] = singleton
    sys.modules.setdefault("rpyutils", types.ModuleType("rpyutils"))
    try:  # a checkout of ament_index_python may be on the path (the launch run); else a stub
        importlib.import_module("ament_index_python")
    except ImportError:
        sys.modules["ament_index_python"] = types.ModuleType("ament_index_python")
        sys.modules["ament_index_python"].get_resources = lambda *a: {}
    rclpy = importlib.import_module("rclpy")
    assert "site-packages" in rclpy.__file__ or rclpy_source, rclpy.__file__
    return rclpy, standin, interfaces


@contextlib.contextmanager
def humble_for_tests():
    """rclpy's real Python package over this stand-in with the Humble message types, for a test
    fixture: skips the test where rclpy's Python package (rclpy-intellisense) is not installed (the
    numpy-1.26 run), clears the factory's cached classes before and after, uninstalls at the end."""
    import pytest
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.messages import RclpyFactory

    if importlib.util.find_spec("rclpy") is None:
        pytest.skip("rclpy's Python package (rclpy-intellisense) is not installed")
    RclpyFactory._class.cache_clear()
    rclpy, _standin, interfaces = install(get_typestore(Stores.ROS2_HUMBLE))
    try:
        yield rclpy
    finally:
        RclpyFactory._class.cache_clear()
        uninstall(interfaces)
