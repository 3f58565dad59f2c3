"""One VM's cross-cloud move, as an operator does it, through both clouds' compute and image APIs.

Steps: remember the VM's status (server metadata `rollwave_source_status`, on the original, before
anything changes), stop it, snapshot it (createImage), wait until the image is active, stream
it into the target's image service (in the VM's project), find the flavor by name or
create one with the same resources, boot it in the VM's project on the planned host with the
mapped networks and metadata `rollwave_source_id` naming the original, wait ACTIVE (stopped again
if the original was SHUTOFF), verify name, flavor, project and status, and only then delete the
original and both images.

Resumable at any step: each step first looks at the clouds for its result (an image of the move's
name, a server whose metadata names the original), so a run killed anywhere and resumed neither
loses nor duplicates a VM. The journal only reports; the clouds are the truth.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from planner.errors import CloudError, ExecutionError
from planner.openstack.connect import Api

SOURCE_ID = "rollwave_source_id"  # on the copy: the original's server id
SOURCE_STATUS = "rollwave_source_status"  # on the original: its status before the move
IMAGE_PREFIX = "rollwave-xcloud-"
MV = "2.74"  # boot on a named host; flavor details in server bodies need 2.47, which 2.74 has
MOVABLE = ("ACTIVE", "SHUTOFF")
CHUNK = 1 << 20  # bytes per piece of an image copy


def image_name(source_id: str) -> str:
    return IMAGE_PREFIX + source_id


@dataclass(frozen=True)
class Facts:
    """What the copy must match, read from the original before it is deleted."""

    name: str
    project: str
    status: str
    flavor: Mapping[str, Any]


class Side:
    """One cloud: its admin Api and, per project, an Api scoped to that project."""

    def __init__(self, cloud: str, connect: Callable[[str, str | None], Any]) -> None:
        self.cloud = cloud
        self._connect = connect
        self._apis: dict[str | None, Api] = {}

    def api(self, project: str | None = None) -> Api:
        if project not in self._apis:
            self._apis[project] = Api(self._connect(self.cloud, project))
        return self._apis[project]

    def raw(self, project: str | None, method: str, path: str, **kw: Any) -> Any:
        """An image call with a byte body or answer (Api.request speaks JSON only)."""
        api = self.api(project)

        def call(conn: Any) -> Any:
            resp = conn.image.request(path, method, raise_exc=False, **kw)
            if resp.status_code >= 400:
                raise CloudError(
                    resp.text[:300], call=f"{method} image {path}", status=resp.status_code
                )
            return resp

        return api.sdk(f"{method} image {path}", call)


Log = Callable[..., None]


class Mover:
    """Moves VMs from `source` to `target`; `log(event, **fields)` journals each step."""

    def __init__(
        self,
        source: Side,
        target: Side,
        networks: Mapping[str, str],
        log: Log,
        poll_s: float = 1.0,
        timeout_s: float = 600.0,
    ) -> None:
        self.source = source
        self.target = target
        self.networks = dict(networks)
        self.log = log
        self.poll_s = poll_s
        self.timeout_s = timeout_s

    # -- reading the clouds ---------------------------------------------------------------------

    def original(self, vm: str) -> dict[str, Any] | None:
        try:
            return dict(self.source.api().get("compute", f"/servers/{vm}", MV)["server"])
        except CloudError as exc:
            if exc.status == 404:
                return None
            raise

    def copy_of(self, vm: str, name: str | None) -> dict[str, Any] | None:
        """The target's server whose metadata names `vm` as its original (by name when known)."""
        path = "/servers/detail?all_tenants=1"
        if name:
            path += "&name=" + quote("^" + _re_escape(name) + "$")
        pages = self.target.api().paginate("compute", path, "servers", microversion=MV)
        found = [
            s for page in pages for s in page if (s.get("metadata") or {}).get(SOURCE_ID) == vm
        ]
        if len(found) > 1:
            raise ExecutionError(
                f"VM {vm}: {len(found)} servers in the target cloud name it as their original"
            )
        return dict(found[0]) if found else None

    def _image(self, side: Side, project: str | None, name: str) -> dict[str, Any] | None:
        images = side.api(project).get("image", f"/images?name={quote(name)}")["images"]
        return dict(images[0]) if images else None

    # -- the move -------------------------------------------------------------------------------

    def move(self, vm: str, dst: str, wave: int) -> None:
        server = self.original(vm)
        name = server["name"] if server else None
        copy = self.copy_of(vm, name)
        if server is None and copy is None:
            raise ExecutionError(f"VM {vm}: in neither cloud (was it deleted outside the run?)")
        if copy is None:
            assert server is not None
            facts = self._facts(server)
            self._stop(vm, server, facts)
            src_image = self._snapshot(vm, facts)
            tgt_image = self._copy_image(vm, facts, src_image)
            flavor = self._flavor(facts.flavor)
            copy = self._boot(vm, facts, tgt_image, flavor, dst, server, wave)
        copy = self._built(vm, copy)
        if server is not None:
            facts = self._facts(server)
            self._settle_status(vm, copy, facts)
            self._verify(vm, copy, facts, dst)
            self._delete_original(vm)
        self._delete_images(vm, copy)
        self.log("xc-moved", vm=vm, to=dst, copy=copy["id"], wave=wave)

    def _facts(self, server: Mapping[str, Any]) -> Facts:
        meta = server.get("metadata") or {}
        status = str(meta.get(SOURCE_STATUS) or server["status"])
        return Facts(str(server["name"]), str(server["tenant_id"]), status, server["flavor"])

    def _stop(self, vm: str, server: Mapping[str, Any], facts: Facts) -> None:
        if facts.status not in MOVABLE:
            raise ExecutionError(
                f"VM {vm} is {facts.status}: a cross-cloud move takes ACTIVE or SHUTOFF VMs"
            )
        api = self.source.api()
        if SOURCE_STATUS not in (server.get("metadata") or {}):
            # Before anything changes: a resumed run must know what to boot it back to.
            body = {"metadata": {SOURCE_STATUS: facts.status}}
            api.request("compute", "POST", f"/servers/{vm}/metadata", microversion=MV, json=body)
        if server["status"] == "ACTIVE":
            api.request(
                "compute", "POST", f"/servers/{vm}/action", microversion=MV, json={"os-stop": None}
            )
        self._wait_server(self.source, vm, {"SHUTOFF"})
        self.log("xc-stopped", vm=vm, was=facts.status)

    def _snapshot(self, vm: str, facts: Facts) -> dict[str, Any]:
        name = image_name(vm)
        image = self._image(self.source, None, name)
        if image is None:
            out = self.source.api().request(
                "compute",
                "POST",
                f"/servers/{vm}/action",
                microversion=MV,
                json={"createImage": {"name": name, "metadata": {SOURCE_ID: vm}}},
            )
            self.log("xc-snapshot", vm=vm, image=out.get("image_id"))
        deadline = time.monotonic() + self.timeout_s
        while True:
            image = self._image(self.source, None, name)
            if image and image["status"] == "active":
                break
            if image and image["status"] in ("killed", "deleted", "deactivated"):
                raise ExecutionError(f"VM {vm}: its snapshot {image['id']} is {image['status']}")
            if time.monotonic() > deadline:
                raise ExecutionError(
                    f"VM {vm}: its snapshot is not active after {self.timeout_s:.0f} s"
                )
            time.sleep(self.poll_s)
        self.log("xc-image-active", vm=vm, image=image["id"], size=image.get("size"))
        return image

    def _copy_image(self, vm: str, facts: Facts, src: Mapping[str, Any]) -> dict[str, Any]:
        name = image_name(vm)
        got = self._image(self.target, facts.project, name)
        if got and got["status"] == "active":
            return got
        if got:  # an upload cut short: start it again
            self.raw(facts.project, "DELETE", f"/images/{got['id']}")
        meta = {
            "name": name,
            "disk_format": src.get("disk_format") or "raw",
            "container_format": src.get("container_format") or "bare",
            SOURCE_ID: vm,
        }
        made = self.target.api(facts.project).request("image", "POST", "/images", json=meta)
        # Streamed: read from one image service while written to the other, never whole in
        # memory (a real disk image is as large as the disk).
        download = self.source.raw(None, "GET", f"/images/{src['id']}/file", stream=True)
        try:
            self.raw(
                facts.project,
                "PUT",
                f"/images/{made['id']}/file",
                data=download.iter_content(CHUNK),
                headers={"Content-Type": "application/octet-stream"},
            )
        finally:
            download.close()
        got = self._image(self.target, facts.project, name)
        if not got or got["status"] != "active" or got.get("size") != src.get("size"):
            raise ExecutionError(f"VM {vm}: the image uploaded to the target is not whole")
        self.log("xc-image-copied", vm=vm, image=got["id"], size=got.get("size"))
        return got

    def raw(self, project: str | None, method: str, path: str, **kw: Any) -> Any:
        return self.target.raw(project, method, path, **kw)

    def _flavor(self, flavor: Mapping[str, Any]) -> str:
        """The target's flavor of that name with the same resources, or a new one."""
        name = str(flavor["original_name"])
        want = (int(flavor["vcpus"]), int(flavor["ram"]), int(flavor["disk"]))
        api = self.target.api()
        for f in api.get("compute", "/flavors/detail?is_public=None", MV)["flavors"]:
            if f["name"] == name:
                have = (int(f["vcpus"]), int(f["ram"]), int(f["disk"]))
                if have != want:
                    raise ExecutionError(
                        f"flavor {name}: {have} (vcpus, ram, disk) in the target, "
                        f"{want} in the source"
                    )
                return str(f["id"])
        body = {"flavor": {"name": name, "vcpus": want[0], "ram": want[1], "disk": want[2]}}
        made = api.request("compute", "POST", "/flavors", microversion=MV, json=body)["flavor"]
        specs = dict(flavor.get("extra_specs") or {})
        if specs:
            api.request(
                "compute",
                "POST",
                f"/flavors/{made['id']}/os-extra_specs",
                json={"extra_specs": specs},
            )
        self.log("xc-flavor-created", flavor=name, id=made["id"])
        return str(made["id"])

    def _networks(self, server: Mapping[str, Any]) -> Any:
        """The boot's networks: each of the original's networks through the map (validated
        before the run), by the target network's name; none when it has none."""
        names = sorted(server.get("addresses") or {})
        if not names:
            return "none"
        api = self.target.api()
        out = []
        for n in names:
            mapped = self.networks[n]
            nets = api.get("network", f"/networks?name={quote(mapped)}")["networks"]
            if len(nets) != 1:
                raise ExecutionError(
                    f"network {mapped!r} (mapped from {n!r}): {len(nets)} in the target"
                )
            out.append({"uuid": nets[0]["id"]})
        return out

    def _boot(
        self,
        vm: str,
        facts: Facts,
        image: Mapping[str, Any],
        flavor: str,
        dst: str,
        server: Mapping[str, Any],
        wave: int,
    ) -> dict[str, Any]:
        networks = self._networks(server)
        body: dict[str, Any] = {
            "server": {
                "name": facts.name,
                "imageRef": image["id"],
                "flavorRef": flavor,
                "networks": networks,
                "host": dst,
                "metadata": {SOURCE_ID: vm},
            }
        }
        made = self.target.api(facts.project).request(
            "compute", "POST", "/servers", microversion=MV, json=body
        )
        self.log(
            "xc-booted", vm=vm, copy=made["server"]["id"], host=dst, networks=networks, wave=wave
        )
        return dict(made["server"])

    def _built(self, vm: str, copy: Mapping[str, Any]) -> dict[str, Any]:
        got = self._wait_server(self.target, str(copy["id"]), {"ACTIVE", "SHUTOFF", "ERROR"})
        if got["status"] == "ERROR":
            fault = (got.get("fault") or {}).get("message", "no fault given")
            raise ExecutionError(f"VM {vm}: its copy {got['id']} is ERROR in the target: {fault}")
        return got

    def _settle_status(self, vm: str, copy: dict[str, Any], facts: Facts) -> None:
        if facts.status == "SHUTOFF" and copy["status"] == "ACTIVE":
            self.target.api().request(
                "compute",
                "POST",
                f"/servers/{copy['id']}/action",
                microversion=MV,
                json={"os-stop": None},
            )
            copy.update(self._wait_server(self.target, str(copy["id"]), {"SHUTOFF"}))

    def _verify(self, vm: str, copy: Mapping[str, Any], facts: Facts, dst: str) -> None:
        f, g = facts.flavor, copy["flavor"]
        wrong = [
            what
            for what, a, b in (
                ("name", facts.name, copy["name"]),
                ("project", facts.project, copy["tenant_id"]),
                ("status", facts.status, copy["status"]),
                ("flavor", f["original_name"], g["original_name"]),
                ("vcpus", f["vcpus"], g["vcpus"]),
                ("ram", f["ram"], g["ram"]),
                ("disk", f["disk"], g["disk"]),
                ("host", dst, copy.get("OS-EXT-SRV-ATTR:host")),
            )
            if a != b
        ]
        if wrong:
            raise ExecutionError(
                f"VM {vm}: its copy {copy['id']} differs in {', '.join(wrong)}; "
                "the original is kept"
            )
        self.log("xc-verified", vm=vm, copy=copy["id"])

    def _delete_original(self, vm: str) -> None:
        self.source.api().request("compute", "DELETE", f"/servers/{vm}", microversion=MV)
        deadline = time.monotonic() + self.timeout_s
        while self.original(vm) is not None:
            if time.monotonic() > deadline:
                raise ExecutionError(
                    f"VM {vm}: the original is not gone after {self.timeout_s:.0f} s"
                )
            time.sleep(self.poll_s)
        self.log("xc-original-deleted", vm=vm)

    def _delete_images(self, vm: str, copy: Mapping[str, Any]) -> None:
        name = image_name(vm)
        src = self._image(self.source, None, name)
        if src:
            self.source.raw(None, "DELETE", f"/images/{src['id']}")
        project = str(copy["tenant_id"])
        tgt = self._image(self.target, project, name)
        if tgt:
            self.raw(project, "DELETE", f"/images/{tgt['id']}")

    def _wait_server(self, side: Side, sid: str, statuses: set[str]) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        while True:
            s = side.api().get("compute", f"/servers/{sid}", MV)["server"]
            if s["status"] in statuses and not s.get("OS-EXT-STS:task_state"):
                return dict(s)
            if time.monotonic() > deadline:
                raise ExecutionError(
                    f"server {sid} in {side.cloud}: {s['status']} after {self.timeout_s:.0f} s, "
                    f"expected {' or '.join(sorted(statuses))}"
                )
            time.sleep(self.poll_s)


def _re_escape(name: str) -> str:
    import re

    return re.escape(name)
