"""Outside review (fifth pass) of issue 20 (ROS 2 for real): what real rcl and tf2_ros do where the
suite's own readers and the rclpy stand-in say something else.

New angles, not in test_rclpy_runtime.py / test_outside_ros2_nodes.py / test_outside_ros2_qos.py /
test_outside_ros2_real3.py / test_outside_ros2_real4.py / test_guards_survivors23.py:

- parameter FILES as rcl's own parser reads them. The reference is not a hand port: the table
  below is what ``rcl_yaml_param_parser`` itself printed, built from ros2/rcl (humble branch, and
  tag 9.2.0 = Jazzy) with rcutils and rmw's name validators, linked to libyaml 0.2.5, driven by a
  20-line C program calling ``rcl_parse_yaml_file`` and printing every (node, parameter, type,
  value). Both distros printed the same for every case here. What rcl refuses, ``rclpy.init``
  refuses (``rcl_parse_arguments``: "Couldn't parse params file"), so ``ros2 run`` / ``ros2 launch``
  start no node; what rcl reads, the node gets. The suite's ``config_file.parameter_entries`` is
  what ``gs-mapping … --config`` reads and also what test/rclpy_standin.py feeds rclpy (so the rclpy
  tests inherit any difference). Its docstring promises "typed as rcl types them; ConfigError naming
  the file for anything rcl would not read". Set ``RCL_YAML_DRIVER=/path/to/that/program`` to
  re-check the table against a built parser.
(The TF case found by the same review is in test_outside_tf_jump.py.)

"""

from __future__ import annotations

import math
import os
import subprocess

import pytest

# ------------------------------------------------------------------------------------------------
# Parameter files: what rcl_yaml_param_parser itself reads (recorded, see the module docstring)

_H = "/**:\n  ros__parameters:\n"

# (case, file text, what rcl read: "REFUSED: <rcl's message>" or {node key: {parameter: value}})
RCL_READS = {
    # YAML anchors and aliases (and merge keys, which are aliases): parse.c, YAML_ALIAS_EVENT
    "alias": (
        _H + "    mapper_node:\n      save_path: &p /maps/a.ply\n"
        "    map_receiver_node:\n      save_path: *p\n",
        "REFUSED: Will not support aliasing at line 6",
    ),
    # an anchor alone is no event of its own: read as if absent
    "anchor_without_alias": (
        _H + "    mapper_node:\n      quality: &q 2\n",
        {"/**": {"mapper_node.quality": 2}},
    ),
    # every parameter of a node commented out: 'ros__parameters:' left with no mapping
    "ros__parameters_left_empty": (
        "/**:\n  ros__parameters:\n    # mapper_node: {quality: 2}\n",
        "REFUSED: Cannot have a value before ros__parameters at line 2",
    ),
    # the same written as an empty flow mapping is read (no parameters)
    "ros__parameters_empty_mapping": ("/**:\n  ros__parameters: {}\n", {"/**": {}}),
    # an emptied section followed by a parameter: rcl keeps the empty section's name as the
    # namespace of the keys after it (is_new_map stays set; parse_key), so sh_degree lands in it.
    # Under rclpy the node then refuses mapper.densify.sh_degree as unknown and does not start.
    "empty_section_then_a_parameter": (
        _H + "    mapper:\n      densify: {}\n      sh_degree: 1\n",
        {"/**": {"mapper.densify.sh_degree": 1}},
    ),
    # a node key that is no ROS node name (rmw_validate_node_name, as rcl checks every key)
    "node_key_with_a_dash": (
        _H + "    mapper_node: {quality: 2}\n/my-robot:\n  ros__parameters:\n    x: 1\n",
        "REFUSED: node name must not contain characters other than alphanumerics or '_'",
    ),
    "node_key_starting_with_a_digit": (
        _H + "    mapper_node: {quality: 2}\n/2nd_mapper:\n  ros__parameters:\n    x: 1\n",
        "REFUSED: node name must not start with a number",
    ),
    # two YAML documents (files concatenated with '---'): rcl reads both, merged
    "two_documents": (
        _H + "    mapper_node: {quality: 2}\n---\n" + _H + "    mapper_node: {levels: 3}\n",
        {"/**": {"mapper_node.quality": 2, "mapper_node.levels": 3}},
    ),
    # YAML's null words are no null to rcl: get_value has no null, they fall through to a string
    "tilde_and_null": (
        _H + "    mapper_node: {save_path: ~, load_path: null}\n",
        {"/**": {"mapper_node.save_path": "~", "mapper_node.load_path": "null"}},
    ),
    # --- added with the fix (same source of truth: rcl_parse_yaml_file's reading, Humble and Jazzy) ---
    # a merge key is an alias too
    "merge_key": (
        _H + "    base: &b {quality: 2}\n    mapper_node:\n      <<: *b\n",
        "REFUSED: Will not support aliasing at line 5",
    ),
    # rcl sees no tags, only a scalar's text and quoting: !!float 2 is an integer (Jazzy reads a
    # !!str as a string, Humble does not: see test_a_str_tag_on_a_number_is_refused)
    "tags_are_not_read": (
        _H + '    a: !!float 2\n    b: !!int "5"\n    c: !!str abc\n    d: !!binary aGVsbG8=\n'
        "    e: !!bool 1\n    f: !custom 3.5\n    g: [1, !!int 2]\n",
        {"/**": {"a": 2, "b": "5", "c": "abc", "d": "aGVsbG8=", "e": 1, "f": 3.5, "g": [1, 2]}},
    ),
    # !!set is a mapping of empty values to rcl
    "set_tag": (_H + "    a: !!set {x, y}\n", "REFUSED: No value at line 3"),
    # a block scalar is typed like a plain one (|- 5 is the integer 5)
    "block_scalars": (
        _H + "    a: |-\n      5\n    b: >-\n      2.5\n    c: >-\n      on\n",
        {"/**": {"a": 5, "b": 2.5, "c": True}},
    ),
    "empty_block_scalar": (_H + "    a: |\n", "REFUSED: No value at line 3"),
    "empty_value": (_H + "    a:\n    b: 1\n", "REFUSED: No value at line 3"),
    # quoting keeps a string; null words inside a list are strings too
    "null_words_quoted_and_in_a_list": (
        _H + "    a: '~'\n    b: Null\n    c: [~, NULL]\n    d: ''\n",
        {"/**": {"a": "~", "b": "Null", "c": ["~", "NULL"], "d": ""}},
    ),
    # parse_key: any key starting with ros__parameters is it
    "ros__parameters_prefix": (
        "/**:\n  ros__parameters_x:\n    quality: 2\n",
        {"/**": {"quality": 2}},
    ),
    "ros__parameters_without_a_node": (
        "ros__parameters:\n  quality: 2\n",
        "REFUSED: There are no node names before ros__parameters at line 1",
    ),
    # nested node keys are joined with one '/' (none after a key ending with one), then validated
    "nested_node_keys": (
        "/car1/:\n  mapper_node:\n    ros__parameters:\n      quality: 2\n",
        {"/car1/mapper_node": {"quality": 2}},
    ),
    "nested_node_key_with_a_leading_slash": (
        "car1:\n  /mapper_node:\n    ros__parameters:\n      quality: 2\n",
        "REFUSED: /car1// contains repeated forward slash",
    ),
    "wildcards_in_a_node_key": (
        "/*/mapper_node:\n  ros__parameters:\n    quality: 2\n/**/hd_map_node:\n  ros__parameters:\n"
        "    levels: 3\n",
        {"/*/mapper_node": {"quality": 2}, "/**/hd_map_node": {"levels": 3}},
    ),
    "star_glued_to_a_name": (
        "/mapper*:\n  ros__parameters:\n    quality: 2\n",
        "REFUSED: node name must not contain characters other than alphanumerics or '_'",
    ),
    "namespace_starting_with_a_digit": (
        "/2car/mapper_node:\n  ros__parameters:\n    quality: 2\n",
        "REFUSED: namespace must not have a token that starts with a number",
    ),
    "non_ascii_node_name": (
        "/m\u00e4pper:\n  ros__parameters:\n    quality: 2\n",
        "REFUSED: node name must not contain characters other than alphanumerics or '_'",
    ),
    # documents: a later one's value of the same key wins, in the first one's place; an empty
    # document is refused (a file of comments only holds none)
    "a_later_document_overrides": (
        "/n1:\n  ros__parameters:\n    a: 1\n---\n/**:\n  ros__parameters:\n    a: 2\n---\n"
        "/n1:\n  ros__parameters:\n    a: 3\n    c: [1]\n",
        {"/n1": {"a": 3, "c": [1]}, "/**": {"a": 2}},
    ),
    "an_empty_document": (_H + "    a: 1\n---\n", "REFUSED: No key at line 5"),
    "comments_only": ("# /**:\n#   ros__parameters: {a: 1}\n", {}),
}

# rcl reads these, but not as written: the suite refuses them with one line naming the file (a
# reading that differs from the text is a node that refuses an unknown key, or worse, a silent miss)
REFUSED_BY_DESIGN = {
    "empty_section_then_a_parameter": "an empty mapping",
}


def _flat(params: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in params.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _same_value(a, b) -> bool:
    """Equal with the ROS type: bool, int, float and str are four parameter types."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


@pytest.mark.parametrize(
    "case",
    list(RCL_READS),
)
def test_a_parameter_file_reads_as_rcl_yaml_param_parser_reads_it(tmp_path, case):
    """config_file.parameter_entries (the CLI's --config, and the rclpy stand-in's parser) against
    rcl_yaml_param_parser's own reading of the same bytes: a file rcl refuses is a ConfigError
    naming it (else `gs-mapping replay --config` accepts a file `ros2 launch` cannot start a node
    with), and a file rcl reads gives the same parameters with the same ROS types (or, where rcl's
    reading is not what the text says, REFUSED_BY_DESIGN: a ConfigError saying why)."""
    from gs_mapping.config_file import parameter_entries
    from gs_mapping.errors import ConfigError

    text, rcl = RCL_READS[case]
    f = tmp_path / "params.yaml"
    f.write_text(text)
    if isinstance(rcl, str) or case in REFUSED_BY_DESIGN:
        with pytest.raises(ConfigError, match="params.yaml") as err:
            parameter_entries(f)
        assert REFUSED_BY_DESIGN.get(case, "") in str(err.value)
        return
    got = {key: _flat(params) for key, params in parameter_entries(f)}
    assert set(got) == set(rcl), (got, rcl)
    for key, want in rcl.items():
        assert set(got[key]) == set(want), (key, got[key], want)
        for name, value in want.items():
            assert _same_value(got[key][name], value), (name, got[key][name], value)


def _driver_reading(driver: str, path) -> object:
    out = subprocess.run([driver, str(path)], capture_output=True, text=True, timeout=30).stdout
    if out.startswith("ERROR\t"):
        return "REFUSED: " + out.split("\t", 1)[1].splitlines()[0]
    read: dict = {}
    conv = {"bool": lambda s: s == "true", "int": int, "double": float, "string": str}
    seps = {"bool[]": ",", "int[]": ",", "double[]": ",", "string[]": "\x1f"}  # (the driver's)
    conv.update({k: (lambda s, k=k: [conv[k[:-2]](x) for x in s.split(seps[k])]) for k in seps})
    for line in out.splitlines():
        node, name, kind, value = line.split("\t")
        read.setdefault(node, {})[name] = conv[kind](value) if kind in conv else (kind, value)
    return read


@pytest.mark.parametrize("case", list(RCL_READS))
def test_the_recorded_rcl_readings_are_what_rcl_prints(tmp_path, case):
    """Keeps the table honest where a built parser is at hand (RCL_YAML_DRIVER: the C driver over
    rcl_parse_yaml_file described in the module docstring); skipped elsewhere."""
    driver = os.environ.get("RCL_YAML_DRIVER")
    if not driver:
        pytest.skip("RCL_YAML_DRIVER not set (a program printing rcl_parse_yaml_file's reading)")
    text, rcl = RCL_READS[case]
    f = tmp_path / "params.yaml"
    f.write_text(text)
    got = _driver_reading(driver, f)
    if isinstance(rcl, str):
        assert isinstance(got, str) and got.startswith(rcl), got
    else:
        want = {k: v for k, v in rcl.items() if v}  # (rcl lists no node without parameters)
        assert got == want, got


def test_a_str_tag_on_a_number_is_refused(tmp_path):
    """``!!str 0x10``: Humble's rcl reads the integer 16 (it sees no tags), Jazzy's the string
    "0x10" (get_value checks YAML_STR_TAG): the two distros disagree, so the suite refuses it."""
    from gs_mapping.config_file import parameter_entries, rcl_yaml
    from gs_mapping.errors import ConfigError

    f = tmp_path / "params.yaml"
    f.write_text(_H + "    c: !!str 0x10\n    d: !!str abc\n")
    with pytest.raises(ConfigError, match="params.yaml.*'!!str 0x10' at line 3: ROS 2 Jazzy reads a string"):
        parameter_entries(f)
    assert rcl_yaml("!!str abc") == "abc"
    driver = os.environ.get("RCL_YAML_DRIVER")
    if driver:
        assert _driver_reading(driver, f) in (
            {"/**": {"c": 16, "d": "abc"}},
            {"/**": {"c": "0x10", "d": "abc"}},
        )


def test_a_command_line_value_is_typed_as_in_a_file():
    """``-p x:=~``: rcl_parse_yaml_value reads the string "~" (no null), ``!!float 2`` the integer."""
    from gs_mapping.config_file import rcl_yaml

    assert rcl_yaml("~") == "~" and rcl_yaml("null") == "null" and rcl_yaml("!!float 2") == 2
    driver = os.environ.get("RCL_YAML_DRIVER")
    if driver:
        out = subprocess.run([driver, "-p", "x", "~"], capture_output=True, text=True, timeout=30).stdout
        assert out == "/**\tx\tstring\t~\n"
