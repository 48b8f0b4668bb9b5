"""A seeded faulty link between a :class:`MapSender` and a :class:`MapStore` (tests and bench).

Each message may be dropped, duplicated, delayed (reordered) or corrupted (bytes flipped). The sender
edits its map every step (adds, moves, recolours, removes) and sends a delta, plus a snapshot every
``snapshot_every`` steps. Checked throughout: whenever the receiver is at sequence s its map is
exactly the sender's map at s (never a wrong map); at the end, after one clean snapshot, the two
are bit-identical.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from synthetic_maps import synthetic_map

from gs_map_share.delta import MapSender
from gs_map_share.quantize import QuantParams, quantize
from gs_map_share.receiver import MapStore


@dataclass
class LinkResult:
    steps: int
    messages: int
    delivered: int
    link: Counter = field(default_factory=Counter)
    receiver: Counter = field(default_factory=Counter)
    in_sync_steps: int = 0
    wrong_state_seen: int = 0
    final_equal: bool = False
    delta_bytes: int = 0
    snapshot_bytes: int = 0

    def as_dict(self) -> dict:
        return {
            "steps": self.steps,
            "messages": self.messages,
            "delivered": self.delivered,
            "link": dict(self.link),
            "receiver": dict(self.receiver),
            "in_sync_steps": self.in_sync_steps,
            "wrong_state_seen": self.wrong_state_seen,
            "final_equal": self.final_equal,
            "delta_bytes": self.delta_bytes,
            "snapshot_bytes": self.snapshot_bytes,
        }


def simulate(
    steps: int = 200,
    seed: int = 0,
    n0: int = 2000,
    sh_degree: int = 1,
    p_drop: float = 0.05,
    p_dup: float = 0.05,
    p_reorder: float = 0.1,
    p_corrupt: float = 0.05,
    snapshot_every: int = 25,
    params: QuantParams | None = None,
) -> LinkResult:
    rng = np.random.default_rng(seed)
    gmap = synthetic_map(n0, sh_degree, seed=seed, extent=4.0)
    sender = MapSender.from_map(gmap, params or QuantParams(), map_id=7)
    store = MapStore()
    history = {sender.seq: sender.shadow.checksum()}
    res = LinkResult(steps, 0, 0)
    delayed: list[tuple[int, bytes]] = []

    def send(data: bytes, step: int) -> None:
        res.messages += 1
        if rng.random() < p_drop:
            res.link["dropped"] += 1
            return
        copies = 2 if rng.random() < p_dup else 1
        res.link["duplicated"] += copies - 1
        for _ in range(copies):
            msg = data
            if rng.random() < p_corrupt:
                b = bytearray(msg)
                for _ in range(int(rng.integers(1, 4))):
                    b[int(rng.integers(0, len(b)))] ^= int(rng.integers(1, 256))
                msg = bytes(b)
                res.link["corrupted"] += 1
            if rng.random() < p_reorder:
                delayed.append((step + int(rng.integers(1, 4)), msg))
                res.link["delayed"] += 1
            else:
                deliver(msg)

    def deliver(msg: bytes) -> None:
        res.delivered += 1
        store.receive(msg)
        if store.ready and history.get(store.seq) != store.state.checksum():
            res.wrong_state_seen += 1

    first = sender.snapshot()
    res.snapshot_bytes += len(first)
    send(first, 0)
    for step in range(1, steps + 1):
        _edit(gmap, rng)
        data, _ = sender.update(gmap, gmap.take_changes())
        history[sender.seq] = sender.shadow.checksum()
        res.delta_bytes += len(data)
        send(data, step)
        if step % snapshot_every == 0:
            snap = sender.snapshot()
            res.snapshot_bytes += len(snap)
            send(snap, step)
        due = [m for m in delayed if m[0] <= step]
        delayed[:] = [m for m in delayed if m[0] > step]
        for _, msg in due:
            deliver(msg)
        if store.ready and store.seq == sender.seq:
            res.in_sync_steps += 1
    for _, msg in delayed:
        deliver(msg)
    deliver(sender.snapshot())  # the next periodic snapshot, delivered intact
    res.receiver = Counter(store.stats)
    res.final_equal = (
        store.seq == sender.seq
        and store.state.equals(sender.shadow)
        and store.gaussian_map().equals(quantize(gmap, sender.params))
    )
    return res


def _edit(gmap, rng) -> None:
    n = len(gmap)
    if n > 10:
        k = max(1, n // 100)
        ids = rng.choice(gmap.ids, k, replace=False)
        gmap.update(ids, means=gmap.means[gmap.rows_of(ids)] + rng.normal(0, 0.01, (k, 3)).astype(np.float32))
        ids = rng.choice(gmap.ids, k, replace=False)
        sh = gmap.sh[gmap.rows_of(ids)].copy()
        sh[:, 0] += rng.normal(0, 0.2, (k, 3)).astype(np.float32)
        gmap.update(ids, sh=sh)
        gmap.remove(rng.choice(gmap.ids, k // 2 + 1, replace=False))
    m = int(rng.integers(0, 30))
    if m:
        rows = rng.integers(0, max(len(gmap), 1), m)
        if len(gmap):
            q = gmap.quats[rows]
            gmap.add(
                gmap.means[rows] + rng.normal(0, 0.05, (m, 3)).astype(np.float32),
                q,
                gmap.log_scales[rows],
                gmap.opacity_logits[rows],
                gmap.sh[rows],
            )
    if rng.random() < 0.02 and len(gmap):  # occasionally empty a region (whole tiles cleared)
        centre = gmap.means[int(rng.integers(0, len(gmap)))]
        near = np.abs(gmap.means - centre).max(axis=1) < 1.0
        if near.any():
            gmap.remove(gmap.ids[near])
