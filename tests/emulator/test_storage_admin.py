"""Storage API calls with no recorded sample: each checked against Cinder's documented answers, over HTTP."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from csi_xloud.emulator.process import EmulatorProcess
from tests.emulator.helpers import Api


def test_pools_with_and_without_detail(api: Api, admin: Api) -> None:
    assert api.volume("GET", "/scheduler-stats/get_pools").status_code == 403
    names = admin.volume("GET", "/scheduler-stats/get_pools").json()["pools"]
    assert names == [{"name": "xloud@ssd#ssd"}, {"name": "xloud@hdd#hdd"}]
    detailed = admin.volume("GET", "/scheduler-stats/get_pools?detail=true").json()["pools"]
    assert [p["name"] for p in detailed] == ["xloud@ssd#ssd", "xloud@hdd#hdd"]
    caps = detailed[0]["capabilities"]
    assert caps["volume_backend_name"] == "ssd"
    assert caps["free_capacity_gb"] + caps["allocated_capacity_gb"] == caps["total_capacity_gb"]


def test_services_filtered_by_binary_and_host(admin: Api) -> None:
    services = admin.volume("GET", "/os-services", mv="3.0").json()["services"]
    assert {s["binary"] for s in services} == {"cinder-scheduler", "cinder-backup", "cinder-volume"}
    volume = admin.volume("GET", "/os-services?binary=cinder-volume", mv="3.49").json()["services"]
    assert [s["host"] for s in volume] == ["xloud@ssd", "xloud@hdd"]
    assert all(s["backend_state"] == "up" and "cluster" in s and s["frozen"] is False for s in volume)
    one = admin.volume("GET", "/os-services?binary=cinder-volume&host=xloud@hdd").json()["services"]
    assert [s["host"] for s in one] == ["xloud@hdd"]
    assert admin.volume("GET", "/os-services?binary=nova-compute").json()["services"] == []


def test_hosts_and_extensions(api: Api, admin: Api) -> None:
    assert api.volume("GET", "/os-hosts").status_code == 403
    hosts = admin.volume("GET", "/os-hosts").json()["hosts"]
    assert {"xloud@ssd", "xloud@hdd"} <= {h["host_name"] for h in hosts}
    vol = api.create_volume(size=2)
    try:
        usage = admin.volume("GET", "/os-hosts/xloud@ssd").json()["host"]
        total = usage[0]["resource"]
        assert total["project"] == "(total)" and int(total["total_volume_gb"]) >= 2
        assert admin.volume("GET", "/os-hosts/nowhere").status_code == 404
    finally:
        api.delete_volume(vol["id"])
    aliases = {e["alias"] for e in api.volume("GET", "/extensions").json()["extensions"]}
    assert {"os-volume-type-access", "os-volume-transfer", "os-hosts", "backups"} <= aliases


def test_routes_that_real_cinder_does_not_have(api: Api) -> None:
    assert api.volume("GET", "/volumes/").status_code == 404
    assert api.volume("GET", "/volumes").status_code == 200
    missing = api.volume("POST", "/snapshots", json={"snapshot": {"volume_id": None, "name": "s"}})
    assert missing.status_code == 404
    assert missing.json()["itemNotFound"]["message"] == "Volume None could not be found."


def test_snapshot_metadata_per_key(api: Api) -> None:
    vol = api.create_volume()
    snap = api.volume(
        "POST", "/snapshots", json={"snapshot": {"volume_id": vol["id"], "metadata": {"a": "1"}}}
    )
    snap_id = snap.json()["snapshot"]["id"]
    try:
        api.wait(lambda: api.volume("GET", f"/snapshots/{snap_id}").json()["snapshot"], "available")
        base = f"/snapshots/{snap_id}/metadata"
        assert api.volume("GET", f"{base}/a").json() == {"meta": {"a": "1"}}
        assert api.volume("PUT", f"{base}/b", json={"meta": {"b": "2"}}).json() == {"meta": {"b": "2"}}
        assert api.volume("PUT", f"{base}/b", json={"meta": {"c": "2"}}).status_code == 400
        assert api.volume("DELETE", f"{base}/a").status_code == 200
        assert api.volume("GET", f"{base}/a").status_code == 404
        assert api.volume("GET", base).json() == {"metadata": {"b": "2"}}
    finally:
        assert api.volume("DELETE", f"/snapshots/{snap_id}").status_code == 202
        api.wait(lambda: api.volume("GET", f"/snapshots/{snap_id}").json().get("snapshot"), None)
        api.delete_volume(vol["id"])


def test_qos_delete_keys_and_disassociate_all(admin: Api) -> None:
    spec = admin.volume(
        "POST",
        "/qos-specs",
        json={"qos_specs": {"name": "tmp-qos", "read_iops_sec": "10", "write_iops_sec": "5"}},
    ).json()["qos_specs"]
    types = {t["name"]: t["id"] for t in admin.volume("GET", "/types").json()["volume_types"]}
    try:
        bad = admin.volume("PUT", f"/qos-specs/{spec['id']}/delete_keys", json={"keys": ["nope"]})
        assert bad.status_code == 400
        gone = admin.volume("PUT", f"/qos-specs/{spec['id']}/delete_keys", json={"keys": ["read_iops_sec"]})
        assert gone.status_code == 202
        assert admin.volume("GET", f"/qos-specs/{spec['id']}").json()["qos_specs"]["specs"] == {
            "write_iops_sec": "5"
        }
        for name in ("archive", "shared"):
            admin.volume("GET", f"/qos-specs/{spec['id']}/associate?vol_type_id={types[name]}")
        assert (
            len(admin.volume("GET", f"/qos-specs/{spec['id']}/associations").json()["qos_associations"]) == 2
        )
        assert admin.volume("GET", f"/qos-specs/{spec['id']}/disassociate_all").status_code == 202
        assert admin.volume("GET", f"/qos-specs/{spec['id']}/associations").json()["qos_associations"] == []
    finally:
        assert admin.volume("DELETE", f"/qos-specs/{spec['id']}").status_code == 202


def test_quota_classes_set_the_defaults(api: Api, admin: Api) -> None:
    assert api.volume("GET", "/os-quota-class-sets/default").status_code == 403
    before = admin.volume("GET", "/os-quota-class-sets/default").json()["quota_class_set"]
    assert before["id"] == "default" and before["volumes"] == 10 and "volumes_standard" in before
    try:
        changed = admin.volume(
            "PUT", "/os-quota-class-sets/default", json={"quota_class_set": {"snapshots": 7}}
        )
        assert changed.json()["quota_class_set"]["snapshots"] == 7
        defaults = api.volume("GET", f"/os-quota-sets/{api.project_id}/defaults").json()["quota_set"]
        assert defaults["snapshots"] == 7
        bad = admin.volume("PUT", "/os-quota-class-sets/default", json={"quota_class_set": {"bogus": 1}})
        assert bad.status_code == 400
    finally:
        admin.volume("PUT", "/os-quota-class-sets/default", json={"quota_class_set": {"snapshots": 10}})


def _backup(api: Api, volume_id: str) -> dict[str, Any]:
    made = api.volume("POST", "/backups", json={"backup": {"volume_id": volume_id, "name": "b"}})
    backup_id = made.json()["backup"]["id"]
    return dict(
        api.wait(lambda: api.volume("GET", f"/backups/{backup_id}").json().get("backup"), "available")
    )


def test_backup_update_reset_export_and_import(api: Api, admin: Api) -> None:
    vol = api.create_volume()
    backup = _backup(api, vol["id"])
    path = f"/backups/{backup['id']}"
    try:
        assert api.volume("PUT", path, mv="3.8", json={"backup": {"name": "x"}}).status_code == 404
        renamed = api.volume("PUT", path, mv="3.9", json={"backup": {"name": "x", "description": "d"}})
        assert renamed.status_code == 200 and renamed.json()["backup"]["name"] == "x"
        refused = api.volume("PUT", path, mv="3.9", json={"backup": {"metadata": {"k": "v"}}})
        assert refused.status_code == 400
        api.volume("PUT", path, mv="3.43", json={"backup": {"metadata": {"k": "v"}}})
        assert api.volume("GET", path).json()["backup"]["metadata"] == {"k": "v"}

        reset = {"os-reset_status": {"status": "error"}}
        assert api.volume("POST", f"{path}/action", json=reset).status_code == 403
        assert admin.volume("POST", f"{path}/action", json=reset).status_code == 202
        assert admin.volume("GET", f"{path}/export_record").status_code == 400  # not available
        back = {"os-reset_status": {"status": "available"}}
        assert admin.volume("POST", f"{path}/action", json=back).status_code == 202
        assert (
            admin.volume("POST", f"{path}/action", json={"os-reset_status": {"status": "x"}}).status_code
            == 400
        )

        assert api.volume("GET", f"{path}/export_record").status_code == 403
        record = admin.volume("GET", f"{path}/export_record").json()["backup-record"]
        assert json.loads(base64.b64decode(record["backup_url"]))["id"] == backup["id"]
        assert record["backup_service"].startswith("cinder.backup.drivers")
        again = admin.volume("POST", "/backups/import_record", json={"backup-record": record})
        assert again.status_code == 400  # it still exists
        # Under a new id (as after a database loss) the record finds the same data.
        copy_id = str(uuid.uuid4())
        decoded = json.loads(base64.b64decode(record["backup_url"]))
        copy_url = base64.b64encode(json.dumps({**decoded, "id": copy_id}).encode()).decode()
        copy = {**record, "backup_url": copy_url}
        assert admin.volume("POST", "/backups/import_record", json={"backup-record": copy}).status_code == 201
        assert api.volume("GET", f"/backups/{copy_id}").json()["backup"]["status"] == "available"
        assert api.volume("DELETE", f"/backups/{copy_id}").status_code == 202
        api.wait(lambda: api.volume("GET", f"/backups/{copy_id}").json().get("backup"), None)
        restored = api.volume("POST", f"{path}/restore", json={"restore": {"name": "from-original"}})
        restored_id = restored.json()["restore"]["volume_id"]
        api.wait_volume(restored_id, "available")  # the original's chunks outlived the copy
        api.wait(lambda: api.volume("GET", path).json()["backup"], "available")
        api.delete_volume(restored_id)
        # Deleted (its chunks go with it), then imported back: the record returns, in error.
        assert api.volume("DELETE", path).status_code == 202
        api.wait(lambda: api.volume("GET", path).json().get("backup"), None)
        imported = admin.volume("POST", "/backups/import_record", json={"backup-record": record})
        assert imported.status_code == 201
        assert api.volume("GET", path).json()["backup"]["status"] == "error"  # its chunks went with it
    finally:
        if api.volume("GET", path).status_code == 200:
            admin.volume("POST", f"{path}/action", json={"os-reset_status": {"status": "available"}})
            api.volume("DELETE", path)
            api.wait(lambda: api.volume("GET", path).json().get("backup"), None)
        api.delete_volume(vol["id"])


def test_volume_transfer_create_accept_and_delete(api: Api) -> None:
    vol = api.create_volume(name="to-give")
    first = api.volume("POST", "/volume-transfers", mv="3.55", json={"transfer": {"volume_id": vol["id"]}})
    assert first.status_code == 202, first.text
    transfer = first.json()["transfer"]
    assert transfer["auth_key"] and transfer["no_snapshots"] is False
    assert api.get_volume(vol["id"])["status"] == "awaiting-transfer"  # type: ignore[index]
    assert api.volume("DELETE", f"/volumes/{vol['id']}").status_code == 400
    assert api.volume("GET", "/volume-transfers", mv="3.54").status_code == 404
    listed = api.volume("GET", "/os-volume-transfer/detail", mv="3.0").json()["transfers"]
    assert transfer["id"] in {t["id"] for t in listed} and "auth_key" not in listed[0]
    assert api.volume("DELETE", f"/os-volume-transfer/{transfer['id']}").status_code == 202
    assert api.get_volume(vol["id"])["status"] == "available"  # type: ignore[index]

    second = api.volume(
        "POST", "/os-volume-transfer", json={"transfer": {"volume_id": vol["id"], "name": "t"}}
    )
    transfer = second.json()["transfer"]
    wrong = api.volume(
        "POST", f"/os-volume-transfer/{transfer['id']}/accept", json={"accept": {"auth_key": "x"}}
    )
    assert wrong.status_code == 400
    assert "invalid auth key" in wrong.json()["badRequest"]["message"]
    accept = {"accept": {"auth_key": transfer["auth_key"]}}
    accepted = api.volume("POST", f"/os-volume-transfer/{transfer['id']}/accept", json=accept)
    assert accepted.status_code == 202 and accepted.json()["transfer"]["volume_id"] == vol["id"]
    assert api.volume("GET", f"/os-volume-transfer/{transfer['id']}").status_code == 404
    assert api.get_volume(vol["id"])["status"] == "available"  # type: ignore[index]
    api.delete_volume(vol["id"])


def test_failed_snapshot_leaves_a_user_message(api: Api, emu: EmulatorProcess) -> None:
    vol = api.create_volume()
    emu.set_faults([{"method": "POST", "path": "/snapshots$", "outcome": "error"}])
    try:
        made = api.volume("POST", "/snapshots", json={"snapshot": {"volume_id": vol["id"]}})
    finally:
        emu.clear_faults()
    snap_id = made.json()["snapshot"]["id"]
    api.wait(lambda: api.volume("GET", f"/snapshots/{snap_id}").json()["snapshot"], "error")
    messages = api.volume("GET", f"/messages?resource_uuid={snap_id}", mv="3.5").json()["messages"]
    assert [(m["event_id"], m["user_message"]) for m in messages] == [
        ("VOLUME_VOLUME_SNAPSHOT_009_013", "create snapshot:Snapshot failed to create.")
    ]
    assert messages[0]["request_id"] == made.headers["x-openstack-request-id"]
    assert api.volume("DELETE", f"/messages/{messages[0]['id']}", mv="3.3").status_code == 204
    assert api.volume("DELETE", f"/snapshots/{snap_id}").status_code == 202
    api.wait(lambda: api.volume("GET", f"/snapshots/{snap_id}").json().get("snapshot"), None)
    api.delete_volume(vol["id"])


def test_services_disable_enable_and_freeze(api: Api, admin: Api) -> None:
    target = {"host": "xloud@hdd", "binary": "cinder-volume"}
    assert api.volume("PUT", "/os-services/disable", json=target).status_code == 403
    try:
        no_reason = admin.volume(
            "PUT", "/os-services/disable-log-reason", json={**target, "disabled_reason": None}
        )
        assert no_reason.status_code == 400
        disabled = admin.volume(
            "PUT", "/os-services/disable-log-reason", json={**target, "disabled_reason": "fix"}
        )
        assert disabled.json() == {
            **target,
            "service": "cinder-volume",
            "status": "disabled",
            "disabled": True,
            "disabled_reason": "fix",
        }
        listed = admin.volume("GET", "/os-services?host=xloud@hdd").json()["services"]
        assert [(s["status"], s["disabled_reason"]) for s in listed] == [("disabled", "fix")]
        unknown = admin.volume(
            "PUT", "/os-services/disable", json={"host": "nowhere", "binary": "cinder-volume"}
        )
        assert unknown.status_code == 404
        assert admin.volume("PUT", "/os-services/freeze", json={"host": "nowhere"}).status_code == 400
        assert admin.volume("PUT", "/os-services/freeze", json={"host": "xloud@hdd"}).status_code == 200
        assert admin.volume("GET", "/os-services?host=xloud@hdd").json()["services"][0]["frozen"] is True
    finally:
        admin.volume("PUT", "/os-services/thaw", json={"host": "xloud@hdd"})
        admin.volume("PUT", "/os-services/enable", json=target)
    assert admin.volume("GET", "/os-services?host=xloud@hdd").json()["services"][0]["status"] == "enabled"


def test_backend_capabilities_match_the_pools(admin: Api) -> None:
    pools = admin.volume("GET", "/scheduler-stats/get_pools?detail=true").json()["pools"]
    for pool in pools:
        caps = admin.volume("GET", f"/capabilities/{pool['name']}").json()
        for key in ("vendor_name", "volume_backend_name", "storage_protocol", "driver_version"):
            assert caps[key] == pool["capabilities"][key]
    assert admin.volume("GET", "/capabilities/nowhere").status_code == 404


def test_encryption_types(api: Api, admin: Api) -> None:
    vtype = admin.volume("POST", "/types", json={"volume_type": {"name": "tmp-encrypted"}}).json()[
        "volume_type"
    ]
    base = f"/types/{vtype['id']}/encryption"
    spec = {"provider": "luks", "cipher": "aes-xts-plain64", "key_size": 256, "control_location": "front-end"}
    try:
        assert admin.volume("GET", base).json() == {}
        assert api.volume("POST", base, json={"encryption": spec}).status_code == 403
        made = admin.volume("POST", base, json={"encryption": spec}).json()["encryption"]
        assert {k: made[k] for k in spec} == spec
        assert admin.volume("POST", base, json={"encryption": spec}).status_code == 400  # one per type
        changed = admin.volume(
            "PUT", f"{base}/{made['encryption_id']}", json={"encryption": {"key_size": 512}}
        )
        assert changed.json() == {"encryption": {"key_size": 512}}
        assert admin.volume("GET", f"{base}/key_size").json() == {"key_size": 512}
        vol = api.create_volume(volume_type="tmp-encrypted")
        assert vol["encrypted"] is True
        assert admin.volume("DELETE", f"{base}/{made['encryption_id']}").status_code == 400  # in use
        api.delete_volume(vol["id"])
        assert admin.volume("DELETE", f"{base}/{made['encryption_id']}").status_code == 202
        assert admin.volume("GET", base).json() == {}
    finally:
        assert admin.volume("DELETE", f"/types/{vtype['id']}").status_code == 202


def test_admins_list_snapshots_of_all_projects_or_of_one(api: Api, admin: Api) -> None:
    vol = api.create_volume()
    made = api.volume("POST", "/snapshots", json={"snapshot": {"volume_id": vol["id"]}}).json()["snapshot"]
    try:
        api.wait(lambda: api.volume("GET", f"/snapshots/{made['id']}").json()["snapshot"], "available")
        everyone = admin.volume("GET", "/snapshots?all_tenants=1").json()["snapshots"]
        assert made["id"] in {s["id"] for s in everyone}
        mine = admin.volume("GET", f"/snapshots?all_tenants=1&project_id={api.project_id}").json()[
            "snapshots"
        ]
        assert made["id"] in {s["id"] for s in mine}
        other = admin.volume("GET", f"/snapshots?all_tenants=1&project_id={'0' * 32}").json()["snapshots"]
        assert other == []
    finally:
        api.volume("DELETE", f"/snapshots/{made['id']}")
        api.wait(lambda: api.volume("GET", f"/snapshots/{made['id']}").json().get("snapshot"), None)
        api.delete_volume(vol["id"])
