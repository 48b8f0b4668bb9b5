"""Build script shared by colcon (ament_python) and pip.

colcon reads this file directly; `pip install -e .` goes through pyproject.toml, which points back here.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "gs_mapping"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Onboard Gaussian mapping: GSMap HD maps, incremental 3DGS mapping, map sharing",
    license="Apache-2.0",
    package_dir={"": "src"},
    # the HD-map checkpoints are a data folder inside gsmap_hd; setuptools wants it named as a
    # package of its own (a folder Python can import but `packages` omits is to be ignored)
    packages=find_packages("src") + ["gsmap_hd.assets"],
    package_data={"gsmap_hd.assets": ["*.pt"]},
    include_package_data=True,
    python_requires=">=3.10",
    # Loose bounds only: a ROS 2 machine brings numpy/yaml from the distro; `make` pins the rest
    # in requirements.txt.
    install_requires=["numpy", "pyyaml"],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "gs-mapping = gs_mapping.cli:main",
            "hd_map_node = gs_mapping.runtime.rclpy_runtime:main_hd_map_node",
            "mapper_node = gs_mapping.runtime.rclpy_runtime:main_mapper_node",
            "map_receiver_node = gs_mapping.runtime.rclpy_runtime:main_map_receiver_node",
            "map_server_node = gs_mapping.runtime.rclpy_runtime:main_map_server_node",
        ],
    },
)
