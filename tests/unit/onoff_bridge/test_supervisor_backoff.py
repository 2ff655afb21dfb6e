from onoff_bridge.supervisor import Backoff


def test_the_delay_doubles_per_quick_failure_up_to_the_cap() -> None:
    backoff = Backoff(initial_s=1.0, cap_s=30.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_the_first_restart_waits_the_initial_delay() -> None:
    assert Backoff(initial_s=0.5).delay(1) == 0.5
