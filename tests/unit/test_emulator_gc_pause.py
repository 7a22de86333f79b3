"""The emulator pauses the cyclic GC around bulk work and always restores it."""

from __future__ import annotations

import gc
import threading

from connector.emulator.gc_pause import gc_paused


def test_nested_and_concurrent_pauses_restore_the_collector() -> None:
    assert gc.isenabled()
    inner_ready, release = threading.Event(), threading.Event()

    def hold() -> None:
        with gc_paused():
            inner_ready.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    with gc_paused():
        assert not gc.isenabled()
        holder.start()
        inner_ready.wait(5)
        with gc_paused():
            assert not gc.isenabled()
    assert not gc.isenabled(), "another thread still holds a pause"
    release.set()
    holder.join(5)
    assert gc.isenabled()


def test_small_work_does_not_pause_and_a_disabled_collector_stays_disabled() -> None:
    with gc_paused(bulk=False):
        assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_collector_comes_back_after_an_error() -> None:
    try:
        with gc_paused():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.isenabled()
