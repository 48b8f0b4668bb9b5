"""package.xml and requirements-ros.txt: what a ROS user's `rosdep install` and `pip install` meet.

rosdep cannot run here (no network to the rosdep sources); the keys below were checked by hand against
ros/rosdistro at commit 8468e88ccd52 (2026-08-22): the python3-* keys in rosdep/python.yaml (each with
debian and ubuntu entries), the ROS packages in humble/distribution.yaml and jazzy/distribution.yaml.
A new key must be checked the same way and added here.
"""

from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]

ROSDEP_PYTHON_KEYS = {  # rosdep/python.yaml
    "python3-numpy",
    "python3-yaml",
    "python3-scipy",
    "python3-shapely",
    "python3-pil",
    "python3-tqdm",
    "python3-torch",
    "python3-pytest",
}
ROS_PACKAGES_HUMBLE_AND_JAZZY = {  # humble/ and jazzy/distribution.yaml
    "rclpy",
    "rcl_interfaces",
    "builtin_interfaces",
    "std_msgs",
    "sensor_msgs",
    "geometry_msgs",
    "visualization_msgs",
    "diagnostic_msgs",
    "tf2_msgs",
    "launch",
    "launch_ros",
    "ros2launch",
    "ament_index_python",
    "rviz2",
    "image_transport_plugins",  # (image_transport_plugins/, both distros, 2026-12-05)
    "rosbag2_storage_mcap",
}
# Python module -> rosdep key (package.xml) for imports the distro provides
MODULE_KEYS = {
    "numpy": "python3-numpy",
    "yaml": "python3-yaml",
    "scipy": "python3-scipy",
    "shapely": "python3-shapely",
    "PIL": "python3-pil",
    "tqdm": "python3-tqdm",
    "torch": "python3-torch",
    "rclpy": "rclpy",
    "rcl_interfaces": "rcl_interfaces",
}
# Python module -> PyPI name in requirements-ros.txt (no rosdep key, or too old in the distro)
MODULE_PIP = {
    "rosbags": "rosbags",
    "mcap": "mcap",
    "constriction": "constriction",
    "cyclonedds": "cyclonedds",
    "zenoh": "eclipse-zenoh",
    "xxhash": "xxhash",
    "crc32c": "crc32c",
    "backports": "backports.zstd",
    "compression": "backports.zstd",  # compression.zstd is stdlib from 3.14; the backport before
}
OPTIONAL = {  # imported lazily behind an option, documented where used
    "gsplat": "CUDA rasteriser (render.backend cuda)",
    "onnx": "gs-mapping hd-export --onnx",
    "onnxruntime": "hd_map_node backend onnx (requirements-ros.txt, comment)",
    "nuscenes": "gsmap_hd.nuscenes (nuscenes-devkit)",
    "numba": "gs_map_share.ans_decode, the compiled ANS decoder (constriction without it)",
}
# Ubuntu's python3-* versions: 22.04 (Humble) and 24.04 (Jazzy)
DISTRO_VERSIONS = {
    "numpy": ("1.21.5", "1.26.4"),
    "scipy": ("1.8.0", "1.11.4"),
    "PyYAML": ("5.4.1", "6.0.1"),
    "pillow": ("9.0.1", "10.2.0"),
    "tqdm": ("4.57.0", "4.66.2"),
}


def _package_xml():
    return ET.parse(REPO / "package.xml").getroot()


def _deps(kind: str) -> set[str]:
    return {e.text.strip() for e in _package_xml().iter(kind)}


def _third_party_imports() -> dict[str, str]:
    """Top-level module -> one file importing it, over src/."""
    found: dict[str, str] = {}
    for path in sorted((REPO / "src").rglob("*.py")):
        for n in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
                names = [n.module]
            for m in names:
                top = m.split(".")[0]
                if top not in sys.stdlib_module_names and top not in (
                    "gs_mapping",
                    "gs_map_share",
                    "gsmap_hd",
                ):
                    found.setdefault(top, str(path.relative_to(REPO)))
    return found


def _requirements(path: Path) -> dict[str, Requirement]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            r = Requirement(line)
            out[r.name.lower()] = r
    return out


def test_no_buildtool_depend_on_ament_python():
    """Issue 20 #2: `<buildtool_depend>ament_python</buildtool_depend>` is no rosdep key."""
    assert not _deps("buildtool_depend")
    assert _package_xml().find("export/build_type").text == "ament_python"


def test_every_key_resolves_on_humble_and_jazzy():
    keys = _deps("exec_depend") | _deps("test_depend") | _deps("depend") | _deps("build_depend")
    unknown = keys - ROSDEP_PYTHON_KEYS - ROS_PACKAGES_HUMBLE_AND_JAZZY
    assert not unknown, f"package.xml: keys not checked against rosdistro: {sorted(unknown)}"


def test_package_xml_declares_what_the_code_imports_and_nothing_else():
    """Issue 20 #9: torch, scipy, shapely, PIL, tqdm … declared; cv_bridge, sensor_msgs_py, tf2_ros,
    nav_msgs (never imported) not; rosbag2_storage_mcap for Humble's `ros2 bag play` of our MCAP bags."""
    declared = _deps("exec_depend")
    pip = _requirements(REPO / "requirements-ros.txt")
    for module, where in _third_party_imports().items():
        if module in MODULE_KEYS:
            assert MODULE_KEYS[module] in declared, f"{where} imports {module}: no {MODULE_KEYS[module]}"
        elif module in MODULE_PIP:
            assert MODULE_PIP[module].lower() in pip, f"{where} imports {module}: not in requirements-ros.txt"
        else:
            assert module in OPTIONAL, f"{where} imports {module}: neither a rosdep key, pip, nor optional"
    # message packages: the types the nodes publish and subscribe (rclpy imports <pkg>.msg by name)
    used = set()
    for path in (REPO / "src" / "gs_mapping" / "nodes").glob("*.py"):
        used |= set(re.findall(r'"([a-z0-9_]+)/msg/[A-Za-z0-9]+"', path.read_text()))
    used |= {"geometry_msgs", "builtin_interfaces"}  # nested in those (Point, Transform, Time)
    launch_only = {
        "launch",
        "launch_ros",
        "ros2launch",
        "ament_index_python",
        "rviz2",
        "image_transport_plugins",
        "rosbag2_storage_mcap",
    }
    ros_declared = declared & ROS_PACKAGES_HUMBLE_AND_JAZZY
    assert used <= ros_declared, f"message packages used but not declared: {sorted(used - ros_declared)}"
    imported_keys = {MODULE_KEYS[m] for m in _third_party_imports() if m in MODULE_KEYS}
    unused = declared - used - launch_only - imported_keys
    assert not unused, f"package.xml declares what nothing uses: {sorted(unused)}"
    assert "rosbag2_storage_mcap" in declared
    for gone in ("cv_bridge", "sensor_msgs_py", "tf2_ros", "nav_msgs"):
        assert gone not in declared


@pytest.mark.parametrize("distro", [0, 1], ids=["humble", "jazzy"])
def test_requirements_ros_admit_the_distros_python_packages(distro):
    """Issue 20 #3: requirements.txt pins numpy 2.x/scipy 1.17 (no Python 3.10 wheels, and a pip numpy 2
    beside the distro's rosidl C extensions); requirements-ros.txt admits what the distro ships."""
    reqs = _requirements(REPO / "requirements-ros.txt")
    for name, versions in DISTRO_VERSIONS.items():
        req = reqs[name.lower()]
        assert req.specifier.contains(versions[distro]), f"{req} excludes {name} {versions[distro]}"


def test_requirements_ros_cover_the_plain_requirements():
    """Every runtime package of requirements.txt is in requirements-ros.txt (ONNX and numba are optional
    there: their newest wheels would put a second numpy over Humble's)."""
    plain = set(_requirements(REPO / "requirements.txt")) - {"onnx", "onnxruntime", "numba", "llvmlite"}
    ros = set(_requirements(REPO / "requirements-ros.txt"))
    assert plain <= ros, sorted(plain - ros)
