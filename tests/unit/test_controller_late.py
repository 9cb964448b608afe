"""A create whose answer was lost holds back new creates of the same name for a while."""

from __future__ import annotations

import pytest

from csi_xloud.controller.late import LateRequests
from csi_xloud.rpc.errors import Unavailable


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_lost_create_holds_back_a_new_one_until_the_window_ends() -> None:
    clock = FakeClock()
    late = LateRequests(clock, window_seconds=90)
    key = ("volume", "pvc-1")
    late.refuse_while_in_flight(key, "volume 'pvc-1'")  # nothing noted: a create may go ahead
    late.note(key)
    clock.now += 60
    with pytest.raises(Unavailable, match=r"may still reach the cloud; not creating another for 30s"):
        late.refuse_while_in_flight(key, "volume 'pvc-1'")
    late.refuse_while_in_flight(("volume", "pvc-2"), "volume 'pvc-2'")  # other names are free
    clock.now += 30
    late.refuse_while_in_flight(key, "volume 'pvc-1'")  # the window is over
    late.refuse_while_in_flight(key, "volume 'pvc-1'")


def test_finding_the_volume_settles_the_key() -> None:
    clock = FakeClock()
    late = LateRequests(clock, window_seconds=90)
    late.note(("snapshot", "s"))
    late.forget(("snapshot", "s"))
    late.refuse_while_in_flight(("snapshot", "s"), "snapshot 's'")
