"""The Helm chart in ``helm/hpcspawner`` for the unit tests: render it, split it, lay it out.

Rendering goes through helm-python-sdk, which embeds Helm's own Go library (v4): no helm
binary and no cluster, so ``lookup`` finds nothing, as under ``helm template`` or Argo CD.
The values files are in ``tests/unit/data/helm/``.
"""

from __future__ import annotations

import base64
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


def lay_out(rendered: dict[str, str], secrets: dict[str, dict[str, bytes]], root: Path) -> Path:
    """Write the hub's files under ``root`` as its Deployment mounts them; return the config file.

    ``secrets``: the existing Secrets the values name, ``{name: {key: content}}``; the
    chart's own Secret, if it renders one, is added from the render.
    """
    secrets = dict(secrets)
    for name, secret in by_kind(rendered, "Secret").items():
        secrets[name] = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    configmaps = by_kind(rendered, "ConfigMap")
    pod = component(rendered, "Deployment", "hub")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: root / m["mountPath"].lstrip("/") for m in container["volumeMounts"]}
    for volume in pod["volumes"]:
        target = mounts.get(volume["name"])
        if target is None:
            continue
        target.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            for key, text in configmaps[volume["configMap"]["name"]]["data"].items():
                (target / key).write_text(text)
        for source in volume.get("projected", {}).get("sources", []):
            secret = secrets[source["secret"]["name"]]
            for item in source["secret"]["items"]:
                path = target / item["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(secret[item["key"]])
                path.chmod(0o400)
    command = container["command"]
    return root / command[command.index("--config") + 1].lstrip("/")
