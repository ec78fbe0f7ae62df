"""The cycle collector frees reference cycles after enough closed connections, not before."""

from __future__ import annotations

import gc
import weakref

from mitmproxy.test import tflow

from credproxy.addons.memory import CycleCollector


class Node:
    pass


def cyclic_garbage() -> weakref.ref:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_collects_after_every_n_closed_connections_and_not_more_often():
    now = [100.0]
    collector = CycleCollector(every=5, min_interval=1.0, clock=lambda: now[0])
    client = tflow.tclient_conn()
    gc.disable()  # only the collector may free the cycle
    try:
        ref = cyclic_garbage()
        now[0] += 2
        for _ in range(4):
            collector.client_disconnected(client)
        assert ref() is not None, "4 of 5 connections: no collection yet"
        collector.client_disconnected(client)
        assert ref() is None, "the 5th closed connection triggers a full collection"

        ref = cyclic_garbage()
        for _ in range(10):
            collector.client_disconnected(client)
        assert ref() is not None, "within min_interval of the last collection: wait"
        now[0] += 1.5
        collector.client_disconnected(client)
        assert ref() is None
    finally:
        gc.enable()
