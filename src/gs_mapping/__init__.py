"""gs_mapping: incremental 3D Gaussian Splatting mapping, the suite's CLI and its ROS glue.

Importing this package is cheap on purpose: no torch, no rosbags, no rclpy at import time.
"""

__version__ = "0.1.0"
