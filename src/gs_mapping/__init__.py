"""gs_mapping: incremental 3D Gaussian Splatting mapping, the suite's CLI and its ROS glue.

Importing this package is cheap on purpose: no torch, no rosbags, no rclpy at import time.
"""

__version__ = "0.1.0"

from .lazy_api import lazy_api

# The core's main types; subpackages (mapping, messages, render, world, nodes, runtime, cli, demo)
# state their own.
_API = {
    "GaussianMap": "gaussians",
    "Camera": "camera",
    "Transform": "geometry",
    "TransformStamped": "geometry",
    "TFBuffer": "tf",
    "BagReader": "bag",
    "BagWriter": "bag",
    "load_ply": "ply",
    "save_ply": "ply",
    "resolve_device": "device",
    "GsMappingError": "errors",
    "ConfigError": "errors",
}
__all__ = ["__version__", *sorted(_API)]
__getattr__ = lazy_api(__name__, _API)
