"""How a multi-platform build's platforms share the machine: StageSlots (the `--jobs` budget, shared by
the platforms' solvers, native first) and NativeFirst (an emulated step's Python work waits for native
steps' own, except while their processes run)."""

from __future__ import annotations

import threading
import time

from builder.build.job import NativeFirst
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


def _emulated_step(turns: NativeFirst, started: list[float]) -> threading.Thread:
    def run() -> None:
        with turns.step(False):
            started.append(time.monotonic())

    t = threading.Thread(target=run)
    t.start()
    return t


def test_an_emulated_step_starts_when_the_native_steps_process_runs() -> None:
    turns, started, ready, go = NativeFirst(), [], threading.Event(), threading.Event()
    turns.YIELD_SECONDS = 5.0  # only the native process's start lets it through, however loaded the machine
    released: list[float] = []

    def native() -> None:
        with turns.step(True):
            ready.set()
            go.wait(5)
            released.append(time.monotonic())
            turns.process_started()
            time.sleep(0.02)
            turns.process_ended()

    n = threading.Thread(target=native)
    n.start()
    ready.wait(5)
    e = _emulated_step(turns, started)
    time.sleep(0.05)
    assert not started
    go.set()
    for t in (n, e):
        t.join(5)
    assert started and started[0] >= released[0]


def test_an_emulated_step_waits_no_longer_than_its_yield() -> None:
    turns, started = NativeFirst(), []
    with turns.step(True):  # a native step busy for longer than an emulated one waits
        t0 = time.monotonic()
        e = _emulated_step(turns, started)
        e.join(5)
    assert started and NativeFirst.YIELD_SECONDS * 0.9 <= started[0] - t0 < 1.0


def test_a_thread_outside_a_multi_platform_step_never_waits_or_counts() -> None:
    turns, started = NativeFirst(), []
    turns.process_started()  # a single-platform build's RUN: no step() around it
    turns.process_ended()
    t0 = time.monotonic()
    _emulated_step(turns, started).join(5)
    assert started[0] - t0 < NativeFirst.YIELD_SECONDS / 2
