"""``say_once``: the process-wide memory of warnings said once, shared by every module that says one
(bag storage, image encodings, depth frames, LiDAR world frames)."""

from __future__ import annotations

import logging

from gs_mapping import say_once as memory
from gs_mapping.say_once import LIMIT, say_once

log = logging.getLogger("test_say_once")


def test_a_warning_is_said_once_by_its_key_and_again_after_forget(caplog) -> None:
    with caplog.at_level("WARNING"):
        assert say_once(log, "cloud frame 'map' lies 40 m", key=("world", "map"))
        assert not say_once(log, "cloud frame 'map' lies 41 m", key=("world", "map"))  # (same key)
        assert say_once(log, "cloud frame 'odom' lies 40 m", key=("world", "odom"))
        assert say_once(log, "plain text") and not say_once(log, "plain text")  # (the text is the key)
        memory.forget()
        assert say_once(log, "plain text")
    assert caplog.messages == [
        "cloud frame 'map' lies 40 m",
        "cloud frame 'odom' lies 40 m",
        "plain text",
        "plain text",
    ]


def test_the_memory_is_bounded_and_says_again_at_worst(caplog) -> None:
    """A long-lived node meeting ever new cases never grows its memory past LIMIT; a case met again
    after the memory started over is said again (never lost)."""
    with caplog.at_level("WARNING"):
        for i in range(3 * LIMIT):
            say_once(log, f"case {i}")
        assert len(memory._said) <= LIMIT
        said_again = say_once(log, "case 0")
    assert said_again and len(caplog.messages) == 3 * LIMIT + 1


def test_real_warnings_of_two_modules_are_each_said_once(caplog) -> None:
    """The 8UC3 colour warning (messages) and the registered-depth frame warning (mapping) through
    their real code paths, each twice: one line each."""
    import numpy as np

    from gs_mapping.mapping.frames import _say_registered_in_another_frame
    from gs_mapping.messages import image_to_rgb, numpy_to_image

    bgr = np.zeros((2, 2, 3), np.uint8)
    with caplog.at_level("WARNING"):
        for _ in range(2):
            image_to_rgb(numpy_to_image(bgr, "8UC3"))
            _say_registered_in_another_frame("depth_optical", "color_optical")
    assert len([m for m in caplog.messages if "8UC3" in m]) == 1, caplog.messages
    assert len([m for m in caplog.messages if "'depth_optical'" in m]) == 1, caplog.messages
