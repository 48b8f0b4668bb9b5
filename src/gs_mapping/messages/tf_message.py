"""tf2_msgs/TFMessage ⇄ a list of :class:`gs_mapping.geometry.TransformStamped`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import TFError
from ..geometry import Transform, TransformStamped, check_quaternion
from .factory import MessageFactory, _factory, make_header, reads, stamp_to_ns

TF_MESSAGE = "tf2_msgs/msg/TFMessage"
TRANSFORM_STAMPED = "geometry_msgs/msg/TransformStamped"


def _frame(name: Any) -> str:
    # tf2 strips a leading "/" (a ROS 1 habit) with a warning; frames are compared without it.
    return str(name).lstrip("/")


def transform_stamped_from_msg(t: Any) -> TransformStamped:
    """One geometry_msgs/TransformStamped → :class:`TransformStamped`; :class:`TFError` if invalid."""
    parent, child = _frame(t.header.frame_id), _frame(t.child_frame_id)
    edge = f"{TF_MESSAGE}: transform {parent or '?'} -> {child or '?'}"
    if not parent or not child:
        raise TFError(
            f"{edge}: empty frame id (header.frame_id={t.header.frame_id!r}, "
            f"child_frame_id={t.child_frame_id!r})"
        )
    if parent == child:
        raise TFError(f"{edge}: a frame cannot be its own parent")
    tr, rot = t.transform.translation, t.transform.rotation
    translation = np.array([tr.x, tr.y, tr.z], np.float64)
    if not np.all(np.isfinite(translation)):
        raise TFError(
            f"{edge} (child frame {child!r}): transform.translation is not finite: {translation.tolist()}"
        )
    q = check_quaternion([rot.x, rot.y, rot.z, rot.w], f"{edge} (child frame {child!r}): transform.rotation")
    return TransformStamped(parent, child, stamp_to_ns(t.header.stamp), Transform(translation, q))


@reads(TF_MESSAGE)
def tf_message_to_transforms(msg: Any) -> list[TransformStamped]:
    """A TFMessage (from /tf or /tf_static) → its transforms, validated (NaN / non-unit → TFError)."""
    return [transform_stamped_from_msg(t) for t in msg.transforms]


def transform_to_msg(ts: TransformStamped, factory: MessageFactory | None = None) -> Any:
    factory = _factory(factory)
    tr = np.asarray(ts.transform.translation, np.float64).reshape(3)
    q = np.asarray(ts.transform.rotation, np.float64).reshape(4)
    return factory.make(
        TRANSFORM_STAMPED,
        header=make_header(ts.stamp_ns, ts.parent, factory),
        child_frame_id=ts.child,
        transform=factory.make(
            "geometry_msgs/msg/Transform",
            translation=factory.make(
                "geometry_msgs/msg/Vector3", x=float(tr[0]), y=float(tr[1]), z=float(tr[2])
            ),
            rotation=factory.make(
                "geometry_msgs/msg/Quaternion", x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])
            ),
        ),
    )


def transforms_to_tf_message(
    transforms: Iterable[TransformStamped], factory: MessageFactory | None = None
) -> Any:
    """A list of :class:`TransformStamped` → a TFMessage."""
    factory = _factory(factory)
    return factory.make(TF_MESSAGE, transforms=[transform_to_msg(t, factory) for t in transforms])
