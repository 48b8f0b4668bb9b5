"""What ``ros2 run`` prints for a parameter rclpy itself refuses at start-up, under rclpy's real
Python code (Humble's, over test/rclpy_standin.py).

rclpy checks a declared parameter's range (and type) before the node's own loader sees the value, and
raises one of its ParameterException subclasses. Humble's keep the message and the parameter's name
as two arguments of the exception (rclpy/exceptions.py: ``Exception.__init__(self, '<message>',
parameter)``), so ``str()`` of it is a tuple's repr; run_node printed that:
``map_receiver_node: ('Invalid parameter value (nan) for parameter. Reason: Parameter
map_receiver_node.min_opacity out of range Min: 0.0, Max: 1.0, value: nan', 'map_receiver_node.min_opacity')``.
Jazzy's ParameterException joins them, ``f'{error_msg}: {parameters}'``; the line is now that on both.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def ros():
    import rclpy_standin

    with rclpy_standin.humble_for_tests() as rclpy:
        yield rclpy


@pytest.mark.parametrize(
    "arg, value, reason",
    [
        ("map_receiver_node.min_opacity:=.nan", "nan", "out of range Min: 0.0, Max: 1.0, value: nan"),
        ("map_receiver_node.min_opacity:=1.5", "1.5", "out of range Min: 0.0, Max: 1.0, value: 1.5"),
        (
            "map_receiver_node.max_pending:=0",
            "0",
            "out of range. Min: 1, Max: 100000, value: 0",
        ),  # (rclpy: a "." here)
    ],
)
def test_a_value_out_of_a_declared_range_is_one_plain_line_and_exit_2(ros, capsys, arg, value, reason):
    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.rclpy_runtime import run_node

    name = arg.split(":=")[0]
    rc = run_node(
        node_class("map_receiver_node"), ["map_receiver_node", "--ros-args", "-p", arg], ros.Context()
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, lines
    line = lines[0]
    want = f"map_receiver_node: Invalid parameter value ({value}) for parameter. Reason: Parameter {name} "
    assert line.startswith(want) and reason in line and line.endswith(f": {name}"), line
    assert "('" not in line and "', '" not in line, line  # (no Python tuple syntax)
