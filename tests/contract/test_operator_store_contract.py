"""The OperatorStore contract: the REST API's keys (stored by hash, listed by name, each name
once, revoked once), the tenant owning each flow registered through the API (first claimer
wins, also when claims race), and heartbeats (one per name, upserted). Run against every
backend (memory, SQLite, PostgreSQL) through the `store` fixture of tests/contract/conftest.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from flowmonkey_celery import ErrorCode, ExecutionError
from flowmonkey_celery.core.api_keys import ApiKey, hash_key, new_api_key
from flowmonkey_celery.core.ports import OperatorStore
from tests.contract.test_store_contract import T0, at, race


def make_key(name: str = "acme-ci", **options: Any) -> ApiKey:
    if "admin" not in options:
        options.setdefault("tenant_id", "acme")
    return new_api_key(name, options.pop("now", T0), **options).record


def test_store_implements_every_method_of_the_operator_protocol(store: OperatorStore) -> None:
    assert isinstance(store, OperatorStore)


# -- API keys ------------------------------------------------------------------------------------


def test_a_key_reads_back_by_its_hash_with_every_field_in_aware_utc(store: OperatorStore) -> None:
    issued = new_api_key(
        "acme-ci",
        datetime(2026, 1, 5, 10, 0, 0, 250000, tzinfo=timezone(timedelta(hours=1))),
        tenant_id="acme",
    )
    admin = make_key("ops", admin=True)

    store.save_api_key(issued.record)
    store.save_api_key(admin)

    loaded = store.get_api_key_by_hash(hash_key(issued.key))
    assert loaded == issued.record
    assert loaded is not None
    assert loaded.created_at == T0.replace(microsecond=250000)
    assert loaded.created_at.utcoffset() == timedelta(0)
    assert loaded.tenant_id == "acme" and loaded.admin is False and loaded.revoked_at is None
    assert store.get_api_key_by_hash(admin.key_hash) == admin


def test_an_unknown_hash_finds_no_key(store: OperatorStore) -> None:
    store.save_api_key(make_key())

    assert store.get_api_key_by_hash(hash_key("fmk_not-a-key")) is None
    assert store.get_api_key_by_hash("") is None


def test_keys_are_listed_by_name_revoked_ones_included(store: OperatorStore) -> None:
    keys = [make_key(name) for name in ("zeta", "alpha", "mid", "beta")]
    for key in keys:
        store.save_api_key(key)
    store.revoke_api_key(keys[2].id, at(5))

    listed = store.list_api_keys()

    assert [k.name for k in listed] == ["alpha", "beta", "mid", "zeta"]
    assert [k.revoked_at for k in listed] == [None, None, at(5), None]


def test_no_keys_lists_nothing(store: OperatorStore) -> None:
    assert store.list_api_keys() == []


def test_a_taken_name_is_refused_with_invalid_argument_and_the_first_kept(
    store: OperatorStore,
) -> None:
    first = make_key("acme-ci")
    store.save_api_key(first)
    second = make_key("acme-ci", tenant_id="globex", now=at(10))

    with pytest.raises(ExecutionError) as raised:
        store.save_api_key(second)

    assert raised.value.code == ErrorCode.INVALID_ARGUMENT
    assert "acme-ci" in str(raised.value)
    assert store.list_api_keys() == [first]
    assert store.get_api_key_by_hash(second.key_hash) is None


def test_concurrent_saves_of_one_name_store_exactly_one(store: OperatorStore) -> None:
    keys = [make_key("shared", tenant_id=f"tenant-{i}") for i in range(8)]

    outcomes = race(8, lambda i: store.save_api_key(keys[i]))

    refused = [o for o in outcomes if o is not None]
    assert len(refused) == 7, outcomes
    assert all(
        isinstance(o, ExecutionError) and o.code == ErrorCode.INVALID_ARGUMENT for o in refused
    ), refused
    (stored,) = store.list_api_keys()
    assert stored in keys


def test_a_key_is_revoked_once(store: OperatorStore) -> None:
    key, other = make_key("acme-ci"), make_key("acme-deploy")
    store.save_api_key(key)
    store.save_api_key(other)

    assert store.revoke_api_key(key.id, at(5)) is True
    assert store.revoke_api_key(key.id, at(9)) is False
    assert store.revoke_api_key("no-such-key", at(9)) is False

    revoked = store.get_api_key_by_hash(key.key_hash)
    assert revoked is not None and revoked.revoked_at == at(5)
    assert revoked.revoked_at.utcoffset() == timedelta(0)
    assert store.get_api_key_by_hash(other.key_hash) == other


def test_a_returned_key_is_a_copy(store: OperatorStore) -> None:
    key = make_key()
    store.save_api_key(key)

    loaded = store.get_api_key_by_hash(key.key_hash)
    assert loaded is not None
    loaded.name = "changed"
    key.name = "changed-too"

    assert [k.name for k in store.list_api_keys()] == ["acme-ci"]


# -- flow owners ---------------------------------------------------------------------------------


def test_the_first_claimer_owns_the_flow(store: OperatorStore) -> None:
    assert store.flow_owners() == {}

    assert store.claim_flow("orders", "acme") == "acme"
    assert store.claim_flow("orders", "globex") == "acme"
    assert store.claim_flow("orders", "acme") == "acme"
    assert store.claim_flow("refunds", "globex") == "globex"

    assert store.flow_owners() == {"orders": "acme", "refunds": "globex"}


def test_concurrent_claims_of_one_flow_have_one_owner(store: OperatorStore) -> None:
    tenants = [f"tenant-{i}" for i in range(8)]

    outcomes = race(8, lambda i: store.claim_flow("orders", tenants[i]))

    assert len(set(outcomes)) == 1, outcomes
    (owner,) = set(outcomes)
    assert owner in tenants
    assert store.flow_owners() == {"orders": owner}


def test_two_tenants_racing_many_flows_each_flow_has_the_owner_its_claimers_saw(
    store: OperatorStore,
) -> None:
    flows = [f"flow-{n}" for n in range(20)]

    def claim_all(index: int) -> list[str]:
        ordered = flows if index == 0 else list(reversed(flows))
        return [store.claim_flow(flow_id, f"tenant-{index}") for flow_id in ordered]

    first, second = race(2, claim_all)

    assert isinstance(first, list) and isinstance(second, list)
    owners = store.flow_owners()
    assert dict(zip(flows, first, strict=True)) == owners
    assert dict(zip(reversed(flows), second, strict=True)) == owners
    assert set(owners.values()) <= {"tenant-0", "tenant-1"}


# -- heartbeats ----------------------------------------------------------------------------------


def test_a_heartbeat_is_upserted_per_name(store: OperatorStore) -> None:
    assert store.last_heartbeat("tick") is None

    store.record_heartbeat("tick", at(10))
    store.record_heartbeat("api", at(15))
    store.record_heartbeat("tick", at(20))

    assert store.last_heartbeat("tick") == at(20)
    assert store.last_heartbeat("api") == at(15)
    assert store.last_heartbeat("beat") is None


def test_a_heartbeat_reads_back_in_aware_utc(store: OperatorStore) -> None:
    store.record_heartbeat("tick", at(30).astimezone(timezone(timedelta(hours=-5))))

    last = store.last_heartbeat("tick")

    assert last == at(30)
    assert last is not None and last.utcoffset() == timedelta(0)


def test_a_naive_heartbeat_is_refused(store: OperatorStore) -> None:
    store.record_heartbeat("tick", at(10))

    with pytest.raises(ValueError, match="naive"):
        store.record_heartbeat("tick", datetime(2026, 1, 5, 9, 0, 30))

    assert store.last_heartbeat("tick") == at(10)


def test_heartbeats_are_listed_by_prefix_taken_literally(store: OperatorStore) -> None:
    store.record_heartbeat("worker:b@host-2", at(20))
    store.record_heartbeat("worker:a@host-1", at(10))
    store.record_heartbeat("worker:a@host-1", at(30))  # upserted: listed once, latest time
    store.record_heartbeat("tick", at(25))
    store.record_heartbeat("workers_100%", at(5))  # `_` and `%` are no wildcards

    workers = store.list_heartbeats("worker:")

    assert workers == {"worker:a@host-1": at(30), "worker:b@host-2": at(20)}
    assert list(workers) == ["worker:a@host-1", "worker:b@host-2"]
    assert all(when.utcoffset() == timedelta(0) for when in workers.values())
    assert store.list_heartbeats("worker_") == {}
    assert store.list_heartbeats("workers_100%") == {"workers_100%": at(5)}
    assert list(store.list_heartbeats()) == [
        "tick",
        "worker:a@host-1",
        "worker:b@host-2",
        "workers_100%",
    ]


def test_heartbeats_of_a_prefix_recorded_before_a_cutoff_are_deleted(store: OperatorStore) -> None:
    store.record_heartbeat("worker:old@pod-1", at(10))
    store.record_heartbeat("worker:new@pod-2", at(30))
    store.record_heartbeat("worker:edge@pod-3", at(20))  # at the cutoff: kept
    store.record_heartbeat("workerXold", at(10))  # the prefix is literal
    store.record_heartbeat("tick", at(5))

    assert store.delete_heartbeats("worker:", before=at(20)) == 1
    assert store.delete_heartbeats("worker_", before=at(40)) == 0

    assert list(store.list_heartbeats()) == [
        "tick",
        "worker:edge@pod-3",
        "worker:new@pod-2",
        "workerXold",
    ]
    with pytest.raises(ValueError, match="naive"):
        store.delete_heartbeats("worker:", before=datetime(2026, 1, 5, 9, 0, 40))
    assert len(store.list_heartbeats("worker:")) == 2
