"""Outside review (mut31f, seed 3106): 30 lines drawn with ``random.Random(3106)`` from the lines of
src/ added since commit c8afb84 (gs_map_share delta.py, quantize.py QMap.with_rows/merged/find_ids,
merge.py tile hash/_tile_index/_same/changed_tiles/_remerge/flush/restore_vehicle, gs_mapping bag.py
and messages/livox.py, runtime/replay.py), each broken the way an outside reviewer would. 27 were caught by the
existing tests, one more (bag.py:565, the record number in an error) by the wider run, one
(merge.py:153, ``_same`` without its dtype check) is equivalent (QMap's fields have fixed dtypes).
A test here for the one left: it compares with the GaussianMap the sender was given."""

from __future__ import annotations

import numpy as np
from synthetic_maps import synthetic_map

from gs_map_share.delta import MapSender, decode_delta
from gs_map_share.quantize import QuantParams, to_qmap

P = QuantParams.from_quality(3)


def test_a_change_record_naming_an_addition_removed_since_sends_the_map_as_it_is():
    """Mutant delta.py:478 ``fresh = named[present]`` → ``fresh = named``. A change record taken,
    then one of the Gaussians it names as added removed before ``update`` (the record is older than
    the map: delta.py's own comment, "added then removed in the same interval: nothing to send").
    The sender must not fail, and a receiver applying the delta holds exactly the ids the
    GaussianMap holds now (the removed addition never arrives)."""
    g = synthetic_map(600, 0, seed=31)
    sender = MapSender.from_map(g, P, map_id=4, first_seq=1)
    old = to_qmap(g, P)
    src = g.rows_of(g.ids[:5])
    new_ids = g.add(g.means[src] + 0.5, g.quats[src], g.log_scales[src], g.opacity_logits[src], g.sh[src])
    changes = g.take_changes()
    assert sorted(changes.added.tolist()) == sorted(np.asarray(new_ids).tolist())
    g.remove(np.asarray(new_ids)[[1, 3]])  # gone again before the record is used
    data, info = sender.update(g, changes)
    _, got = decode_delta(old, data)
    assert sorted(got.ids.tolist()) == sorted(int(i) for i in g.ids)
    assert info.added == 3
