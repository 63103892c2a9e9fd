"""Contract section 1: ServiceId, the enums, Capability, TransportConfig, ExtensionService, RegistrationInfo."""

from __future__ import annotations

import collections
import copy
import dataclasses
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from lifecycle import (
    Capability,
    ExtensionService,
    RegistrationInfo,
    ServiceId,
    ServiceStatus,
    TransportConfig,
    TransportType,
)

# -- ServiceId ------------------------------------------------------------------------------


def test_service_id_is_a_str_subclass_equal_to_the_same_text():
    sid = ServiceId("abc")
    assert isinstance(sid, str)
    assert sid == "abc"
    assert sid != "abd"


def test_service_id_str_is_the_plain_text():
    sid = ServiceId("abc")
    assert str(sid) == "abc"
    assert type(str(sid)) is str
    assert f"{sid}" == "abc"


def test_service_id_hashes_like_the_same_str_and_works_as_dict_key():
    sid = ServiceId("abc")
    assert hash(sid) == hash("abc")
    table = {sid: 1}
    assert table["abc"] == 1
    assert {"abc": 2}[sid] == 2
    assert len({sid, ServiceId("abc"), "abc"}) == 1


def test_service_id_generate_returns_uuid4_text():
    sid = ServiceId.generate()
    assert type(sid) is ServiceId
    parsed = uuid.UUID(sid)
    assert parsed.version == 4
    assert str(parsed) == sid


def test_service_id_generate_returns_unique_ids():
    ids = {ServiceId.generate() for _ in range(1000)}
    assert len(ids) == 1000


# -- enums ----------------------------------------------------------------------------------


def test_service_status_members_and_lower_case_values():
    assert [s.name for s in ServiceStatus] == ["STARTING", "RUNNING", "STOPPING", "STOPPED", "ERROR", "RECONNECTING"]
    for status in ServiceStatus:
        assert status.value == status.name.lower()
        assert isinstance(status.value, str)


def test_service_status_values_are_str_and_lookup_by_value_works():
    assert ServiceStatus("running") is ServiceStatus.RUNNING
    assert ServiceStatus.RECONNECTING.value == "reconnecting"


def test_transport_type_members_and_values():
    assert {t.name: t.value for t in TransportType} == {
        "STDIO": "stdio",
        "TCP": "tcp",
        "UNIX": "unix",
        "WEBSOCKET": "websocket",
    }


# -- Capability -----------------------------------------------------------------------------


def test_capability_defaults():
    cap = Capability("search")
    assert cap.name == "search"
    assert cap.version == ""
    assert cap.config == {}
    assert dataclasses.is_dataclass(cap)


def test_capability_positional_and_keyword_fields():
    cap = Capability("search", "2", {"k": 1})
    assert (cap.name, cap.version, cap.config) == ("search", "2", {"k": 1})
    assert Capability(name="x", version="1", config={"a": "b"}) == Capability("x", "1", {"a": "b"})


def test_capability_default_config_is_not_shared_between_instances():
    a, b = Capability("a"), Capability("b")
    a.config["x"] = 1
    assert b.config == {}


# -- TransportConfig ------------------------------------------------------------------------


def test_transport_config_defaults_match_contract_exactly():
    tc = TransportConfig()
    assert dataclasses.is_dataclass(tc)
    assert tc.transport_type is TransportType.STDIO
    assert tc.address is None
    assert tc.port is None
    assert tc.command is None
    assert tc.args == []
    assert tc.env == {}
    assert tc.cwd is None
    assert tc.timeout_secs == 30.0
    assert tc.auto_reconnect is True
    assert tc.max_retries == 3
    assert tc.heartbeat_interval_secs == 30.0


def test_transport_config_field_names_are_the_contract_ones():
    names = [f.name for f in dataclasses.fields(TransportConfig)]
    assert names == [
        "transport_type",
        "address",
        "port",
        "command",
        "args",
        "env",
        "cwd",
        "timeout_secs",
        "auto_reconnect",
        "max_retries",
        "heartbeat_interval_secs",
        # Per-service overrides of the manager's timing (issue "Operability"); None: the config's.
        "heartbeat_timeout_secs",
        "ping_interval_secs",
        "max_reconnect_attempts",
        # Placement of a process-bound service in a fleet (issue "Child processes in a fleet").
        "host",
        "per_host",
    ]


def test_transport_config_default_containers_are_not_shared():
    a, b = TransportConfig(), TransportConfig()
    a.args.append("--x")
    a.env["K"] = "v"
    assert b.args == []
    assert b.env == {}


def test_transport_config_accepts_full_settings():
    tc = TransportConfig(
        TransportType.TCP,
        address="127.0.0.1",
        port=8080,
        command="srv",
        args=["-v"],
        env={"A": "1"},
        cwd="/tmp",
        timeout_secs=5,
        auto_reconnect=False,
        max_retries=0,
        heartbeat_interval_secs=1.5,
    )
    assert tc.transport_type is TransportType.TCP
    assert (tc.address, tc.port, tc.command, tc.args, tc.env, tc.cwd) == (
        "127.0.0.1",
        8080,
        "srv",
        ["-v"],
        {"A": "1"},
        "/tmp",
    )
    assert tc.timeout_secs == 5
    assert tc.auto_reconnect is False
    assert tc.max_retries == 0
    assert tc.heartbeat_interval_secs == 1.5


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"timeout_secs": 0}, "timeout_secs"),
        ({"timeout_secs": -1.0}, "timeout_secs"),
        ({"timeout_secs": float("nan")}, "timeout_secs"),
        ({"timeout_secs": float("inf")}, "timeout_secs"),
        ({"heartbeat_interval_secs": 0}, "heartbeat_interval_secs"),
        ({"heartbeat_interval_secs": float("nan")}, "heartbeat_interval_secs"),
        ({"max_retries": -1}, "max_retries"),
        ({"port": -1}, "port"),
        ({"port": 65536}, "port"),
        ({"transport_type": "carrier-pigeon"}, "transport_type"),
    ],
)
def test_transport_config_rejects_bad_values_with_value_error_naming_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TransportConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"timeout_secs": "30"}, "timeout_secs"),
        ({"timeout_secs": True}, "timeout_secs"),
        ({"heartbeat_interval_secs": None}, "heartbeat_interval_secs"),
        ({"auto_reconnect": 1}, "auto_reconnect"),
        ({"auto_reconnect": "yes"}, "auto_reconnect"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"port": "80"}, "port"),
        ({"address": 127}, "address"),
        ({"args": ("a",)}, "args"),
        ({"env": [("A", "1")]}, "env"),
        ({"transport_type": 3}, "transport_type"),
    ],
)
def test_transport_config_rejects_wrong_types_with_type_error_naming_field(kwargs, field):
    with pytest.raises(TypeError, match=field):
        TransportConfig(**kwargs)


# -- ExtensionService construction ----------------------------------------------------------


def test_extension_service_construction_defaults():
    svc = ExtensionService("svc", "1.0")
    assert svc.name == "svc"
    assert svc.version == "1.0"
    assert svc.description == ""
    assert svc.capabilities == []
    assert svc.transport == TransportConfig()
    assert svc.metadata == {}
    assert svc.status is ServiceStatus.STARTING
    assert svc.last_heartbeat is None
    assert svc.retry_count == 0
    assert isinstance(svc.id, ServiceId)
    assert uuid.UUID(svc.id).version == 4


def test_extension_service_generates_a_distinct_id_per_instance():
    assert ExtensionService("a", "1").id != ExtensionService("a", "1").id


def test_extension_service_explicit_id_is_kept_and_equals_the_text():
    svc = ExtensionService("a", "1", id=ServiceId("fixed"))
    assert svc.id == "fixed"
    assert isinstance(svc.id, ServiceId)


def test_extension_service_optional_fields_are_keyword_only():
    with pytest.raises(TypeError):
        ExtensionService("a", "1", "a description")  # type: ignore[misc]


def test_extension_service_keyword_fields_are_stored():
    cap = Capability("search", "2")
    transport = TransportConfig(TransportType.UNIX, address="/run/x.sock")
    svc = ExtensionService("a", "1", description="d", capabilities=[cap], transport=transport, metadata={"owner": "me"})
    assert svc.description == "d"
    assert svc.capabilities == [cap]
    assert svc.transport.transport_type is TransportType.UNIX
    assert svc.metadata == {"owner": "me"}


def test_extension_service_default_containers_are_not_shared():
    a, b = ExtensionService("a", "1"), ExtensionService("b", "1")
    a.capabilities.append(Capability("x"))
    a.metadata["k"] = "v"
    a.transport.args.append("--flag")
    assert b.capabilities == []
    assert b.metadata == {}
    assert b.transport.args == []


@pytest.mark.parametrize("field", ["name", "version"])
@pytest.mark.parametrize("bad", [None, 1, 1.0, b"bytes", ["x"]])
def test_extension_service_non_str_name_or_version_raises_type_error_naming_field(field, bad):
    kwargs = {"name": "ok", "version": "1"}
    kwargs[field] = bad
    with pytest.raises(TypeError, match=rf"\b{field}\b"):
        ExtensionService(**kwargs)


@pytest.mark.parametrize("field", ["name", "version"])
@pytest.mark.parametrize("bad", ["", " ", "\t\n", "x" * 257, "y" * 10_000])
def test_extension_service_empty_blank_or_too_long_name_or_version_raises_value_error_naming_field(field, bad):
    kwargs = {"name": "ok", "version": "1"}
    kwargs[field] = bad
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        ExtensionService(**kwargs)


def test_extension_service_accepts_name_and_version_of_exactly_256_chars():
    svc = ExtensionService("n" * 256, "v" * 256)
    assert len(svc.name) == 256
    assert len(svc.version) == 256


# -- heartbeat and health -------------------------------------------------------------------


def test_heartbeat_sets_last_heartbeat_to_monotonic_now(frozen_lifecycle):
    svc = ExtensionService("a", "1")
    svc.heartbeat()
    assert svc.last_heartbeat == time.monotonic()
    frozen_lifecycle.freezer.tick(12.5)
    svc.heartbeat()
    assert svc.last_heartbeat == time.monotonic()


def test_heartbeat_resets_retry_count(frozen_lifecycle):
    svc = ExtensionService("a", "1", retry_count=4)
    assert svc.retry_count == 4
    svc.heartbeat()
    assert svc.retry_count == 0


def test_is_healthy_false_when_running_but_never_heartbeated(frozen_lifecycle):
    svc = ExtensionService("a", "1")
    svc.set_status(ServiceStatus.RUNNING)
    assert svc.is_healthy(30.0) is False


@pytest.mark.parametrize("status", [s for s in ServiceStatus if s is not ServiceStatus.RUNNING])
def test_is_healthy_false_when_not_running_even_with_fresh_heartbeat(frozen_lifecycle, status):
    svc = ExtensionService("a", "1")
    svc.heartbeat()
    svc.set_status(status)
    assert svc.is_healthy(30.0) is False


def test_is_healthy_true_right_after_heartbeat_and_just_before_timeout(frozen_lifecycle):
    svc = ExtensionService("a", "1")
    svc.set_status(ServiceStatus.RUNNING)
    svc.heartbeat()
    assert svc.is_healthy(30.0) is True
    frozen_lifecycle.freezer.tick(29.999)
    assert svc.is_healthy(30.0) is True


def test_is_healthy_false_at_exactly_the_timeout(frozen_lifecycle):
    svc = ExtensionService("a", "1")
    svc.set_status(ServiceStatus.RUNNING)
    svc.heartbeat()
    frozen_lifecycle.freezer.tick(30)
    assert svc.is_healthy(30.0) is False


def test_is_healthy_false_after_the_timeout_and_true_again_after_new_heartbeat(frozen_lifecycle):
    svc = ExtensionService("a", "1")
    svc.set_status(ServiceStatus.RUNNING)
    svc.heartbeat()
    frozen_lifecycle.freezer.tick(31)
    assert svc.is_healthy(30.0) is False
    svc.heartbeat()
    assert svc.is_healthy(30.0) is True


def test_is_healthy_accepts_int_timeout(frozen_lifecycle):
    svc = ExtensionService("a", "1")
    svc.set_status(ServiceStatus.RUNNING)
    svc.heartbeat()
    frozen_lifecycle.freezer.tick(5)
    assert svc.is_healthy(6) is True
    assert svc.is_healthy(5) is False


# -- capabilities and status ----------------------------------------------------------------


def test_has_capability_and_get_capability():
    search = Capability("search", "2", {"max": 10})
    svc = ExtensionService("a", "1", capabilities=[search, Capability("index")])
    assert svc.has_capability("search") is True
    assert svc.has_capability("index") is True
    assert svc.has_capability("missing") is False
    assert svc.get_capability("search") == search
    assert svc.get_capability("search").config == {"max": 10}
    assert svc.get_capability("missing") is None


def test_has_capability_false_without_capabilities():
    svc = ExtensionService("a", "1")
    assert svc.has_capability("search") is False
    assert svc.get_capability("search") is None


@pytest.mark.parametrize("status", list(ServiceStatus))
def test_set_status_sets_every_status(status):
    svc = ExtensionService("a", "1")
    svc.set_status(status)
    assert svc.status is status


def test_set_status_rejects_non_status_with_type_error():
    svc = ExtensionService("a", "1")
    with pytest.raises(TypeError):
        svc.set_status(3)  # type: ignore[arg-type]
    assert svc.status is ServiceStatus.STARTING


def test_set_status_rejects_unknown_status_text_with_value_error():
    svc = ExtensionService("a", "1")
    with pytest.raises(ValueError):
        svc.set_status("sleeping")  # type: ignore[arg-type]
    assert svc.status is ServiceStatus.STARTING


# -- RegistrationInfo -----------------------------------------------------------------------


def _is_aware_utc(moment: datetime) -> bool:
    return moment.tzinfo is not None and moment.utcoffset() == timedelta(0)


def test_registration_info_times_are_timezone_aware_utc_now(frozen_lifecycle):
    info = RegistrationInfo(ExtensionService("a", "1"))
    assert _is_aware_utc(info.registered_at)
    assert _is_aware_utc(info.updated_at)
    expected = datetime(2026, 1, 1, tzinfo=UTC)
    assert info.registered_at == expected
    assert info.updated_at == expected


def test_registration_info_touch_updates_only_updated_at(frozen_lifecycle):
    info = RegistrationInfo(ExtensionService("a", "1"))
    registered = info.registered_at
    frozen_lifecycle.freezer.tick(42)
    info.touch()
    assert info.registered_at == registered
    assert info.updated_at == registered + timedelta(seconds=42)
    assert _is_aware_utc(info.updated_at)


def test_registration_info_holds_explicit_fields():
    svc = ExtensionService("a", "1")
    t0 = datetime(2025, 5, 1, tzinfo=UTC)
    t1 = datetime(2025, 5, 2, tzinfo=UTC)
    info = RegistrationInfo(svc, t0, t1)
    assert info.service is svc
    assert (info.registered_at, info.updated_at) == (t0, t1)


# -- copy isolation -------------------------------------------------------------------------


def _rich_service() -> ExtensionService:
    return ExtensionService(
        "rich",
        "1",
        capabilities=[Capability("search", "1", {"nested": {"k": [1, 2]}})],
        transport=TransportConfig(args=["-a"], env={"E": "1"}),
        metadata={"tags": ["x"], "nested": {"y": 1}},
    )


def test_deepcopy_of_service_equals_original():
    svc = _rich_service()
    clone = copy.deepcopy(svc)
    assert clone == svc
    assert clone.id == svc.id


def test_deepcopy_of_service_shares_no_mutable_state():
    svc = _rich_service()
    clone = copy.deepcopy(svc)
    assert clone.capabilities is not svc.capabilities
    assert clone.capabilities[0] is not svc.capabilities[0]
    assert clone.capabilities[0].config is not svc.capabilities[0].config
    assert clone.transport is not svc.transport
    assert clone.transport.args is not svc.transport.args
    assert clone.transport.env is not svc.transport.env
    assert clone.metadata is not svc.metadata
    assert clone.metadata["tags"] is not svc.metadata["tags"]


def test_mutating_deepcopy_leaves_original_untouched():
    svc = _rich_service()
    clone = copy.deepcopy(svc)
    clone.capabilities.append(Capability("extra"))
    clone.capabilities[0].config["nested"]["k"].append(3)
    clone.capabilities[0].version = "9"
    clone.transport.args.append("-b")
    clone.transport.env["F"] = "2"
    clone.transport.timeout_secs = 1.0
    clone.metadata["tags"].append("z")
    clone.metadata["nested"]["y"] = 2
    clone.set_status(ServiceStatus.ERROR)
    assert svc == _rich_service_with_id(svc.id)


def _rich_service_with_id(sid: ServiceId) -> ExtensionService:
    fresh = _rich_service()
    fresh.id = sid
    return fresh


def test_deepcopy_of_service_with_empty_containers_does_not_share_them():
    svc = ExtensionService("a", "1")
    clone = copy.deepcopy(svc)
    clone.capabilities.append(Capability("x"))
    clone.metadata["k"] = 1
    clone.transport.args.append("-x")
    clone.transport.env["K"] = "v"
    assert svc.capabilities == []
    assert svc.metadata == {}
    assert svc.transport.args == []
    assert svc.transport.env == {}


def test_transport_config_int_too_large_for_a_float_is_rejected_with_value_error():
    with pytest.raises(ValueError, match="timeout_secs"):
        TransportConfig(timeout_secs=10**400)


def test_deepcopy_of_service_keeps_empty_defaultdict_metadata_factory():
    svc = ExtensionService("a", "1", metadata=collections.defaultdict(list))
    clone = copy.deepcopy(svc)
    assert clone.metadata.default_factory is list
