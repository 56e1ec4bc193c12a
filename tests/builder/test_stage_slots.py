"""How a multi-platform build's platforms share the machine: StageSlots (the `--jobs` budget, shared by
the platforms' solvers, native first). That emulated platforms start after the native ones: e2e
test_multiplatform."""

from __future__ import annotations

import threading
import time

from builder.build.solver import StageSlots


def _waiter(slots: StageSlots, native: bool, order: list[str], name: str, hold: threading.Event) -> threading.Thread:
    def run() -> None:
        with slots.held(native):
            order.append(name)
            hold.wait(5)

    t = threading.Thread(target=run)
    t.start()
    return t


def _waiting(slots: StageSlots, n: int) -> None:
    deadline = time.monotonic() + 5
    while len(slots._cond._waiters) < n and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.001)


def test_a_free_slot_goes_to_a_native_stage_before_an_emulated_one_that_waited_longer() -> None:
    slots, order, release = StageSlots(1), [], threading.Event()
    first = _waiter(slots, True, order, "running", release)
    while not order:
        time.sleep(0.001)
    emulated = _waiter(slots, False, order, "emulated", release)
    _waiting(slots, 1)
    native = _waiter(slots, True, order, "native", release)
    _waiting(slots, 2)
    release.set()
    for t in (first, emulated, native):
        t.join(5)
    assert order == ["running", "native", "emulated"]


def test_no_more_stages_than_slots_run_at_once() -> None:
    slots, lock, running, most = StageSlots(2), threading.Lock(), [0], [0]

    def stage(native: bool) -> None:
        with slots.held(native):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.01)
            with lock:
                running[0] -= 1

    threads = [threading.Thread(target=stage, args=(i % 2 == 0,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert most[0] == 2
