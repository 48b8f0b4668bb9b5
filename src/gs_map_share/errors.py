"""Errors of the map-sharing codec."""

from gs_mapping.errors import GsMappingError


class DecodeError(GsMappingError):
    """A container, snapshot or delta is malformed, corrupt, or does not fit the receiver's map.

    The decoder raises only this on bad input; whatever it was applied to is left untouched.
    """


class EncodeError(GsMappingError):
    """A map cannot be encoded with the given parameters (e.g. a coordinate beyond the lattice)."""
