"""The Helm chart in ``helm/hpcspawner`` for the unit tests: render it, split it, lay it out.

Rendering goes through helm-python-sdk, which embeds Helm's own Go library (v4): no helm
binary and no cluster, so ``lookup`` finds nothing, as under ``helm template`` or Argo CD.
The values files are in ``tests/unit/data/helm/``.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "hpcspawner"
VALUES_DIR = Path(__file__).parent / "data" / "helm"
VALUES_FILES = sorted(p.stem for p in VALUES_DIR.glob("*.yaml"))
RELEASE = "jh"
NAMESPACE = "jupyter"


def values(name: str) -> dict:
    """The values file ``tests/unit/data/helm/<name>.yaml``."""
    return yaml.safe_load((VALUES_DIR / f"{name}.yaml").read_text())


def merged(base: dict, change: dict) -> dict:
    """``base`` with ``change`` merged in, as Helm merges a values file over another."""
    out = dict(base)
    for key, value in change.items():
        nested = isinstance(value, dict) and value
        out[key] = merged(out.get(key, {}), value) if nested else value
    return out


def render(chart, values: dict) -> dict[str, str]:
    """Template file name (``hub/deployment.yaml``) -> its text, for non-empty templates."""
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    prefix = "hpcspawner/templates/"
    return {path.removeprefix(prefix): text for path, text in out.items() if text.strip()}


def objects(rendered: dict[str, str]) -> list[dict]:
    """Every Kubernetes object of a render (NOTES.txt left out)."""
    found = []
    for path, text in rendered.items():
        if path.endswith(".yaml"):
            found += [doc for doc in yaml.safe_load_all(text) if doc]
    return found


def by_kind(rendered: dict[str, str], kind: str) -> dict[str, dict]:
    """The objects of one kind, by their ``metadata.name``."""
    return {o["metadata"]["name"]: o for o in objects(rendered) if o["kind"] == kind}


def component(rendered: dict[str, str], kind: str, name: str) -> dict:
    """The one object of ``kind`` whose component label is ``name`` (hub, proxy)."""
    (found,) = [
        o
        for o in objects(rendered)
        if o["kind"] == kind
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == name
        and not o["metadata"]["name"].endswith(("-api", "-public"))
    ]
    return found


#: kubelet's mode bits for a volume's files and directories when the pod has an fsGroup
#: (pkg/volume/volume_linux.go): the group may read (and write, unless the volume is
#: read-only); directories are setgid and searchable by it.
FS_GROUP_READ_ONLY, FS_GROUP_WRITABLE, FS_GROUP_DIRS = 0o440, 0o660, 0o2110


def lay_out(
    rendered: dict[str, str], secrets: dict[str, dict[str, bytes]], root: Path, *, owner=False
) -> Path:
    """Write the hub's volumes under ``root`` as the kubelet does; return the config file.

    Each mounted volume is the directory ``root/<its mountPath>``. A ConfigMap's or Secret's
    files are laid out as the kubelet's AtomicWriter writes them (a hidden payload directory,
    ``..data`` linking to it, and a link per top-level name), with the volume's modes, and the
    read access the pod's ``fsGroup`` gives; ``owner``: also give them to that group (needs
    root). Other volumes (PersistentVolumeClaim, emptyDir) are empty directories.

    ``secrets``: the existing Secrets the values name, ``{name: {key: content}}``; the
    chart's own Secret, if it renders one, is added from the render.
    """
    secrets = dict(secrets)
    for name, secret in by_kind(rendered, "Secret").items():
        secrets[name] = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    configmaps = by_kind(rendered, "ConfigMap")
    pod = component(rendered, "Deployment", "hub")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    group = pod.get("securityContext", {}).get("fsGroup")
    mounts = {m["name"]: root / m["mountPath"].lstrip("/") for m in container["volumeMounts"]}
    for volume in pod["volumes"]:
        target = mounts.get(volume["name"])
        if target is None:
            continue
        target.mkdir(parents=True, exist_ok=True)
        files = volume_files(volume, configmaps, secrets)
        if files:
            write_atomically(target, files)
        if group is not None:
            give_to_group(target, group, read_only=bool(files), owner=owner)
    command = container["command"]
    return root / command[command.index("--config") + 1].lstrip("/")


def volume_files(volume: dict, configmaps: dict, secrets: dict) -> dict[str, tuple[bytes, int]]:
    """A ConfigMap's or projected Secrets' volume: {path in it: (content, mode)}; else {}."""
    if "configMap" in volume:
        source = volume["configMap"]
        mode = source.get("defaultMode", 0o644)
        data = configmaps[source["name"]]["data"]
        return {key: (text.encode(), mode) for key, text in data.items()}
    files = {}
    projected = volume.get("projected", {})
    for source in projected.get("sources", []):
        (kind,) = source  # the chart projects Secrets only
        assert kind == "secret", f"{volume['name']}: a projected {kind} is not laid out here"
        secret = secrets[source["secret"]["name"]]
        for item in source["secret"]["items"]:
            mode = item.get("mode", projected.get("defaultMode", 0o644))
            files[item["path"]] = (secret[item["key"]], mode)
    return files


def write_atomically(target: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """``files`` in ``target`` as the kubelet's AtomicWriter leaves them: in a hidden, dated
    directory that ``..data`` links to, and a link per top-level name into ``..data``."""
    payload = target / "..2024_01_01_00_00_00.000000001"
    for path, (content, mode) in files.items():
        file = payload / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(content)
        file.chmod(mode)
    (target / "..data").symlink_to(payload.name)
    for name in {path.split("/")[0] for path in files}:
        (target / name).symlink_to(f"..data/{name}")


def give_to_group(target: Path, group: int, *, read_only: bool, owner: bool) -> None:
    """The fsGroup's access to a volume, as the kubelet gives it (symlinks left alone)."""
    paths = [target, *target.rglob("*")]
    for path in paths:
        if path.is_symlink():
            continue
        if owner:
            os.chown(path, -1, group)
        mask = FS_GROUP_READ_ONLY if read_only else FS_GROUP_WRITABLE
        if path.is_dir():
            mask |= FS_GROUP_DIRS
        path.chmod(path.stat().st_mode & 0o7777 | mask)
