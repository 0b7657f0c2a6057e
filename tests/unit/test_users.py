"""Distinct users as sketches: exact while few, within 2% when many, bounded in size,
and the set operations returning and lapsed users are made of."""

from __future__ import annotations

import orjson

from services.detector.engine.aggregate import Acc
from services.detector.engine.catalog import load_catalog
from services.detector.engine.users import Users, union

CATALOG = load_catalog()


def counts(first: float) -> list[float]:
    """A partial's counts in the catalog's layout: ``first`` in the first slot."""
    return [first] + [0.0] * (len(CATALOG.count_slots) - 1)


def users(ids: range) -> Users:
    out = Users()
    for i in ids:
        out.add(i)
    return out


def test_a_few_thousand_users_are_counted_exactly_through_every_operation() -> None:
    today, yesterday = users(range(0, 9_000)), users(range(6_000, 15_000))
    assert today.count() == 9_000
    assert (today & yesterday).count() == 3_000  # returning
    assert (yesterday - today).count() == 6_000  # lapsed
    assert union([today, yesterday]).count() == 15_000
    today.add(3)  # someone seen twice counts once
    assert today.count() == 9_000


def test_a_million_users_are_counted_within_two_percent_in_a_bounded_partial() -> None:
    crowd = users(range(1_000_000))
    assert abs(crowd.count() - 1_000_000) <= 20_000
    partial = Acc.total([Acc(counts(1.0), [crowd])])
    size = len(orjson.dumps(partial.to_json()))
    assert size < 200_000, f"{size:,} bytes"
    again = Acc.from_json(orjson.loads(orjson.dumps(partial.to_json())), CATALOG)
    assert again.distinct[0].count() == partial.distinct[0].count()


def test_partials_and_snapshots_of_the_lists_before_sketches_are_read() -> None:
    old = Acc.from_json({"c": counts(2.0), "d": [[11, 12, 13]]}, CATALOG)
    assert old.distinct[0] == users(range(11, 14))
    mixed = old.copy()
    mixed.merge(Acc.from_json(Acc(counts(1.0), [users(range(12, 20))]).to_json(), CATALOG))
    assert (mixed.counts, mixed.distinct[0].count()) == (counts(3.0), 9.0)


def test_empty_users_cost_nothing_and_stay_empty() -> None:
    empty = Users()
    assert not empty and empty.count() == 0 and empty.to_json() == ""
    assert not Users.from_json("") and not (empty & users(range(3)))
    assert (users(range(3)) - empty).count() == 3
