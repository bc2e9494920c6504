"""search/driver/interrupts.py: a signal before a command writes ends it at once; while it writes, it waits."""

import os
import signal

import pytest

from search.driver import interrupts


def test_a_signal_while_held_waits_and_is_listed():
    with interrupts.held() as got:
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt here: the write goes on
        os.kill(os.getpid(), signal.SIGTERM)
        assert got == [signal.SIGINT, signal.SIGTERM]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers given back


@pytest.mark.parametrize(
    ("sig", "raised"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, interrupts.Terminated)]
)
def test_an_interruptible_phase_ends_at_once_and_remembers_the_signal(sig, raised):
    with pytest.raises(raised):
        with interrupts.interruptible():
            os.kill(os.getpid(), sig)
            signal.pause()  # never reached past: the handler raised
    assert interrupts.received == [sig]
    with interrupts.held() as got:  # a signal Python swallowed mid-way is still seen by the next phase
        assert got == [sig]
    with interrupts.held() as got:  # and only once
        assert got == []


def test_a_new_command_forgets_an_earlier_commands_signal():
    interrupts.received[:] = [signal.SIGINT]
    with interrupts.interruptible():
        with interrupts.held() as got:
            assert got == []
