"""Where a job's SIGTERM may cut work short (`medattn.jobs.interrupt`): inside an interruptible
block of the main thread, once; never outside one (a batch's rows being stored) nor in another
thread."""

from __future__ import annotations

import threading

import pytest

from medattn.jobs.interrupt import Interrupted, interrupt, interruptible


def test_interrupt_raises_inside_a_block_once_and_nowhere_else():
    interrupt()  # outside: returns, the work sees its stop() later
    with pytest.raises(Interrupted):
        with interruptible():
            interrupt()
    with interruptible():
        with interruptible():  # an inner block leaves the outer one armed when it ends
            pass
        with pytest.raises(Interrupted):
            interrupt()
        interrupt()  # disarmed by the raise: a second signal in the same block does nothing
    interrupt()


def test_a_block_in_another_thread_is_never_interrupted():
    """Signal handlers run in the main thread: a block elsewhere (the app's script thread, two
    precomputes in threads) must not make the main thread's code interruptible."""
    inside, leave = threading.Event(), threading.Event()

    def work() -> None:
        with interruptible():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=work)
    thread.start()
    try:
        assert inside.wait(10)
        interrupt()  # the main thread is in no block: nothing raised
    finally:
        leave.set()
        thread.join(10)
