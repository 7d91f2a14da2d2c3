from datetime import UTC, datetime, timedelta

import pytest

from dctoolkit.accounts.fairshare import UserUsage, charge, decayed, priority_order, running_charge

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = 86400.0


def test_usage_halves_every_half_life():
    assert decayed(100.0, T0, T0 + timedelta(days=1), DAY) == pytest.approx(50.0)
    assert decayed(100.0, T0, T0 + timedelta(days=2), DAY) == pytest.approx(25.0)


def test_charge_adds_to_the_decayed_balance():
    assert charge(100.0, T0, T0 + timedelta(days=1), DAY, 10.0) == pytest.approx(60.0)
    assert charge(0.0, None, T0, DAY, 4 * 30.0) == 120.0


def test_running_jobs_count_cpus_times_elapsed():
    now = T0 + timedelta(seconds=10)
    assert running_charge([(2, T0), (1, T0 + timedelta(seconds=5)), (4, None)], now) == 25.0


def test_share_scales_usage_and_lowest_goes_first():
    usages = {1: UserUsage(1, 100.0, 0.0, share=2.0), 2: UserUsage(2, 60.0, 0.0), 3: UserUsage(3, 0.0, 10.0)}
    assert priority_order(usages) == [3, 1, 2]
