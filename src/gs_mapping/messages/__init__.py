"""The one place that knows ROS message layouts: numpy ⇄ message, duck-typed.

Reading functions take an rclpy message or a rosbags message alike (attribute access only); building
functions take a :class:`MessageFactory` (default: rosbags messages, see :func:`default_factory`).
Bad input raises :class:`gs_mapping.errors.MessageError` (TF: :class:`~gs_mapping.errors.TFError`)
naming the message type, the field and what was wrong.

Modules: ``factory`` (factories, CDR, stamps, headers), ``image``, ``compressed_image``,
``camera_info``, ``pointcloud2``, ``tf_message``, ``markers``, ``std`` (UInt8MultiArray, String).
"""
from .camera_info import (CAMERA_INFO, CameraIntrinsics, camera_info_to_camera,
                          camera_info_to_intrinsics, intrinsics_to_camera_info)
from .compressed_image import (COMPRESSED_IMAGE, compressed_image_to_numpy,
                               numpy_to_compressed_image)
from .factory import (NS_PER_S, MessageFactory, RclpyFactory, RosbagsFactory, as_uint8_array,
                      convert_message, default_factory, deserialize_cdr, header_fields, make_header,
                      make_stamp, ns_to_stamp_fields, serialize_cdr, stamp_to_ns, typestore)
from .image import (IMAGE, SUPPORTED_ENCODINGS, depth_image_to_metres, encoding_layout,
                    image_to_numpy, image_to_rgb, metres_to_depth_image, numpy_to_image)
from .markers import (DELETE, DELETEALL, LINE_LIST, LINE_STRIP, MARKER, MARKER_ARRAY, POINTS,
                      Polyline, delete_all_marker, line_list_marker, line_strip_marker, make_marker,
                      marker_array, marker_array_to_polylines, marker_to_points, points_marker)
from .pointcloud2 import (POINT_CLOUD2, array_to_pointcloud2, fields_to_dtype, pointcloud2_rgb,
                          pointcloud2_to_array, pointcloud2_xyz, points_to_pointcloud2)
from .std import (STRING, UINT8_MULTI_ARRAY, bytes_to_uint8_multiarray, json_to_string_message,
                  string_message, string_message_to_json, string_message_to_str,
                  uint8_multiarray_to_bytes)
from .tf_message import (TF_MESSAGE, tf_message_to_transforms, transform_stamped_from_msg,
                         transform_to_msg, transforms_to_tf_message)

__all__ = [
    "CAMERA_INFO", "CameraIntrinsics", "camera_info_to_camera", "camera_info_to_intrinsics",
    "intrinsics_to_camera_info",
    "COMPRESSED_IMAGE", "compressed_image_to_numpy", "numpy_to_compressed_image",
    "NS_PER_S", "MessageFactory", "RclpyFactory", "RosbagsFactory", "as_uint8_array", "convert_message",
    "default_factory", "deserialize_cdr", "header_fields", "make_header", "make_stamp",
    "ns_to_stamp_fields", "serialize_cdr", "stamp_to_ns", "typestore",
    "IMAGE", "SUPPORTED_ENCODINGS", "depth_image_to_metres", "encoding_layout", "image_to_numpy",
    "image_to_rgb", "metres_to_depth_image", "numpy_to_image",
    "DELETE", "DELETEALL", "LINE_LIST", "LINE_STRIP", "MARKER", "MARKER_ARRAY", "POINTS", "Polyline",
    "delete_all_marker", "line_list_marker", "line_strip_marker", "make_marker", "marker_array",
    "marker_array_to_polylines", "marker_to_points", "points_marker",
    "POINT_CLOUD2", "array_to_pointcloud2", "fields_to_dtype", "pointcloud2_rgb", "pointcloud2_to_array",
    "pointcloud2_xyz", "points_to_pointcloud2",
    "STRING", "UINT8_MULTI_ARRAY", "bytes_to_uint8_multiarray", "json_to_string_message",
    "string_message", "string_message_to_json", "string_message_to_str", "uint8_multiarray_to_bytes",
    "TF_MESSAGE", "tf_message_to_transforms", "transform_stamped_from_msg", "transform_to_msg",
    "transforms_to_tf_message",
]
