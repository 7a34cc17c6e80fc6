from tether.retention import PruneSchedule


def test_nothing_is_due_in_the_hosts_first_interval_whatever_the_count() -> None:
    steady = [10.0]
    schedule = PruneSchedule(every=3, interval=60, clock=lambda: steady[0])
    assert not any(schedule.wrote() for _ in range(10))
    steady[0] += 60
    assert schedule.wrote()


def test_after_the_first_every_n_writes_or_the_interval() -> None:
    steady = [10.0]
    schedule = PruneSchedule(every=3, interval=60, clock=lambda: steady[0])
    schedule.pruned()
    assert [schedule.wrote() for _ in range(3)] == [False, False, True]
    schedule.pruned()
    steady[0] += 59
    assert not schedule.wrote()
    steady[0] += 1
    assert schedule.wrote()


def test_past_the_hosts_first_interval_the_first_write_is_due() -> None:
    schedule = PruneSchedule(every=3, interval=60, clock=lambda: 60.0)
    assert schedule.wrote()
