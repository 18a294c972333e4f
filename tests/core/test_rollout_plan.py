from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_shunt.core.rollout_plan import (
    ONE_BOX,
    REST,
    Host,
    RolloutPlan,
    chunk,
    plan_rollout,
)
from telemetry_shunt.errors import ShuntError, ValidationError

AZS = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]


def fleet(counts: dict[str, int]) -> list[Host]:
    hosts, n = [], 0
    for az, count in counts.items():
        for _ in range(count):
            n += 1
            hosts.append(Host(f"i-{n:017x}", az))
    return hosts


def test_one_box_then_rest_in_batches_of_50_zone_by_zone():
    plan = plan_rollout(fleet({"us-east-1b": 120, "us-east-1a": 3}))
    assert [z.az for z in plan.zones] == ["us-east-1a", "us-east-1b"]
    b = plan.zone("us-east-1b")
    assert [len(x.instance_ids) for x in b.batches] == [1, 50, 50, 19]
    assert [x.wave for x in b.batches] == [ONE_BOX, REST, REST, REST]
    assert b.batches[0].max_errors == "0"
    assert b.batches[1].max_errors == "5" and b.batches[3].max_errors == "1"
    assert b.batches[1].max_concurrency == "25"
    a = plan.zone("us-east-1a")
    assert [len(x.instance_ids) for x in a.batches] == [1, 2]


def test_single_host_zone_has_only_the_canary_wave():
    plan = plan_rollout(fleet({"us-east-1a": 1}))
    assert plan.zones[0].waves == (ONE_BOX,)


def test_az_order_override_limits_and_orders_zones():
    plan = plan_rollout(fleet({"us-east-1a": 2, "us-east-1b": 2, "us-east-1c": 2}),
                        az_order=["us-east-1c", "us-east-1a"])
    assert [z.az for z in plan.zones] == ["us-east-1c", "us-east-1a"]
    assert plan.host_count == 4


@pytest.mark.parametrize(
    ("kwargs", "hosts", "message"),
    [
        ({"az_order": ["us-east-1z"]}, {"us-east-1a": 2}, "unknown AZ us-east-1z"),
        ({}, {}, "fleet is empty"),
        ({"batch_size": 0}, {"us-east-1a": 2}, "batch size must be between 1 and 50, got 0"),
        ({"batch_size": 51}, {"us-east-1a": 2}, "got 51"),
        ({"max_errors_percent": 101}, {"us-east-1a": 2}, "max errors percent"),
        ({"az_order": ["us-east-1a", "us-east-1a"]}, {"us-east-1a": 2}, "twice"),
    ],
)
def test_bad_input_is_a_validation_error(kwargs, hosts, message):
    with pytest.raises(ValidationError, match=message):
        plan_rollout(fleet(hosts), **kwargs)
    assert issubclass(ValidationError, ShuntError)


def test_host_in_two_zones_is_rejected():
    with pytest.raises(ValidationError, match="two zones"):
        plan_rollout([Host("i-00000000000000001", "us-east-1a"), Host("i-00000000000000001", "us-east-1b")])


def test_round_trip_through_dict():
    plan = plan_rollout(fleet({"us-east-1a": 60, "us-east-1c": 7}), batch_size=20)
    assert RolloutPlan.from_dict(plan.to_dict()) == plan


def test_plan_is_independent_of_listing_order():
    hosts = fleet({"us-east-1a": 30, "us-east-1b": 30})
    assert plan_rollout(hosts) == plan_rollout(list(reversed(hosts)))


def test_chunk():
    assert chunk([str(i) for i in range(101)]) == [
        [str(i) for i in range(50)], [str(i) for i in range(50, 100)], ["100"]]


@settings(max_examples=60, deadline=None)
@given(
    counts=st.dictionaries(st.sampled_from(AZS), st.integers(min_value=1, max_value=180), min_size=1),
    batch_size=st.integers(min_value=1, max_value=50),
    errors=st.integers(min_value=0, max_value=100),
    shuffle=st.randoms(use_true_random=False),
)
def test_properties(counts, batch_size, errors, shuffle):
    hosts = fleet(counts)
    shuffle.shuffle(hosts)
    order = sorted(counts, reverse=True)
    plan = plan_rollout(hosts, batch_size=batch_size, az_order=order, max_errors_percent=errors)
    ids = [i for b in plan.batches for i in b.instance_ids]
    # every host exactly once
    assert sorted(ids) == sorted(h.instance_id for h in hosts)
    # zones in the requested order, each zone contiguous, every batch in one zone
    assert [z.az for z in plan.zones] == order
    zone_of = {h.instance_id: h.az for h in hosts}
    for zone in plan.zones:
        assert zone.batches[0].wave == ONE_BOX and len(zone.batches[0].instance_ids) == 1
        assert all(b.wave == REST for b in zone.batches[1:])
        for b in zone.batches:
            assert 1 <= len(b.instance_ids) <= batch_size
            assert {zone_of[i] for i in b.instance_ids} == {zone.az}
            assert 0 <= int(b.max_errors) <= len(b.instance_ids)
            assert 1 <= int(b.max_concurrency) <= len(b.instance_ids)
    assert len({b.batch_id for b in plan.batches}) == len(plan.batches)
