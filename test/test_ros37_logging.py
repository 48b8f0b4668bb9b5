"""Every logging call in src/ against rclpy's real logger (``rclpy.impl.rcutils_logger.RcutilsLogger``
of Humble's Python package, over test/rclpy_standin.py).

Under ``ros2 run`` a node's logger is rclpy's, and so is every logger handed on from it (the mapper's
Deskew, adapt_to_cloud, MapPoses, final_save, say_once, NodeDiagnostics all take ``ctx.logger``).
rclpy's ``log(message, severity, **kwargs)`` takes ONE message and only its filters' keywords
(``get_filters_from_kwargs`` raises TypeError for any other: ``exc_info``, ``stacklevel``, ``extra``),
and has no ``critical``/``exception`` method: any of these, taken by a Python logger without a word,
raises inside a callback under rclpy and the executor ends the node (session 20's crash on the
first warning was one such call). test_rclpy_runtime.py checks the printf style; this checks the
rest, with the allowed names read from rclpy itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SEVERITIES = ("debug", "info", "warning", "warn", "error", "fatal", "critical", "exception")


@pytest.fixture(scope="module")
def rcutils_logger():
    import rclpy_standin

    with rclpy_standin.humble_for_tests():
        from rclpy.impl import rcutils_logger

        yield rcutils_logger


def _logging_calls():
    """(where, method, call) of every ``<something log…>.<severity>(…)`` call in src/."""
    for path in sorted((REPO / "src").rglob("*.py")):
        for n in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(n, ast.Call)
                and isinstance(n.func, ast.Attribute)
                and n.func.attr in SEVERITIES
                and "log" in ast.unparse(n.func.value).lower()
            ):
                yield f"{path.relative_to(REPO)}:{n.lineno}", n.func.attr, n


def test_the_rule_is_read_from_rclpy(rcutils_logger):
    """What the check below allows, as rclpy has it (a change of rclpy shows here first)."""
    allowed = {p for f in rcutils_logger.supported_filters.values() for p in f.params}
    assert allowed >= {"once", "skip_first", "throttle_duration_sec"}
    assert not hasattr(rcutils_logger.RcutilsLogger, "critical")
    assert not hasattr(rcutils_logger.RcutilsLogger, "exception")
    with pytest.raises(TypeError, match="exc_info"):
        rcutils_logger.get_filters_from_kwargs(exc_info=True)


def test_every_logging_call_in_src_is_one_rclpy_takes(rcutils_logger):
    allowed = {p for f in rcutils_logger.supported_filters.values() for p in f.params} | {"name"}
    calls = list(_logging_calls())
    assert len(calls) > 50  # (the scan finds the suite's calls)
    bad = []
    for where, method, call in calls:
        keywords = {k.arg for k in call.keywords}
        if not hasattr(rcutils_logger.RcutilsLogger, method):
            bad.append(f"{where}: .{method}() (rclpy's logger has none)")
        if len(call.args) != 1 or any(isinstance(a, ast.Starred) for a in call.args):
            bad.append(f"{where}: {len(call.args)} positional arguments (rclpy's logger takes one message)")
        if None in keywords or keywords - allowed:  # (None: a **kwargs)
            bad.append(f"{where}: keywords {sorted(map(str, keywords - allowed))} rclpy refuses")
    assert not bad, bad
