"""train/common.py: the wall-time clock shared by the trainers."""
import time

from train.common import TrainClock


def test_clock_without_limit_never_stops():
    clock = TrainClock({"time_limit_minutes": 0}, seconds_before=1e6)
    assert not clock.out_of_time("m", 1) and clock.seconds() >= 1e6


def test_clock_counts_earlier_runs(capsys):
    clock = TrainClock({"time_limit_minutes": 1}, seconds_before=59.0)
    assert not clock.out_of_time("m", 5)
    clock.t0 -= 2.0  # two more seconds of this run
    assert clock.out_of_time("m", 6)
    assert capsys.readouterr().out.strip() == "m: time limit of 1 min reached after 6 steps"


def test_clock_seconds_grow():
    clock = TrainClock({})
    first = clock.seconds()
    time.sleep(0.01)
    assert clock.seconds() > first
