"""The hub's image (helm/image): built here without a registry, and the chart's hub config
loads in it as the pod runs it.

``helm/image/build.sh`` makes a Debian 12 base with mmdebstrap from the Debian mirror,
imports it into podman and builds helm/image/Containerfile FROM it; the Containerfile
installs the hub's environment with scripts/install-hub-env.sh, the script the test venvs
are made with. Each step is cached by the hash of its inputs (the base as a tarball under
/var/cache/hpcspawner-image, the image in podman's store tagged with the hash), so a run
whose inputs did not change reuses them, and any change rebuilds (about a minute from
nothing on a 2-core machine, half of it the base). Whether cached or not, the checks run
in the image every time.

Needs root, the Debian mirror and PyPI (the build), and ``apt-get install mmdebstrap podman
runc`` (scripts/install-deps.sh); not the Slurm cluster.
"""

from __future__ import annotations

import re
import shutil

import asyncssh
import helm_python as helm
import pytest

from hpcspawner._version import __version__
from tests.unit.helmchart import CHART, component, lay_out, render, values

from .chartpods import build_image, podman_run_options
from .hub import REPO


@pytest.fixture(scope="module")
def image():
    missing = [tool for tool in ("mmdebstrap", "podman") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `sudo scripts/install-deps.sh`")
    result = build_image()
    assert result.returncode == 0, f"build.sh failed:\n{result.stderr}"
    return result.stdout.split()[-1]


def test_the_image_has_the_hubs_environment(image):
    script = (REPO / "scripts" / "install-hub-env.sh").read_text()
    (jupyterhub,) = re.findall(r"JUPYTERHUB_VERSION=\$\{JUPYTERHUB_VERSION:-(\S+)\}", script)
    result = build_image("run", "--", "jupyterhub", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == jupyterhub
    check = (
        "import asyncssh, httpx, jupyterhub_idle_culler, hpcspawner, os; "
        "print(hpcspawner.__version__, os.getuid())"
    )
    result = build_image("run", "--", "python", "-c", check)
    assert result.returncode == 0, result.stderr
    # the work tree's hpcspawner, with both drivers' libraries and the culler; not root
    assert result.stdout.split() == [__version__, "1000"]


def test_the_charts_config_loads_in_the_image_as_the_pod_runs_it(image, tmp_path):
    """The chart's ConfigMap and Secrets laid out as the kubelet does, mounted as the hub's
    Deployment mounts them, in a container with the pod's user, fsGroup and security
    context (read-only root file system, no capabilities): hpcspawner-check-config loads
    the chart's jupyterhub_config.py there, reads every secret file, parses the SSH key and
    known_hosts."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    host = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    existing = {
        "hub-ssh": {
            "id_ed25519": key.export_private_key(),
            "known_hosts": f"login1.cluster.example.org {host}".encode(),
        },
        "hub-oidc": {"client-secret": b"oidc-client-secret\n"},
    }
    with helm.Chart.load(str(CHART)) as chart:
        rendered = render(chart, values("minimal"))
    config = lay_out(rendered, existing, tmp_path, owner=True)
    pod = component(rendered, "Deployment", "hub")["spec"]["template"]["spec"]
    options = podman_run_options(pod, tmp_path)
    in_pod = "/" + str(config.relative_to(tmp_path))
    result = build_image("run", *options, "--", "hpcspawner-check-config", in_pod)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{in_pod}: SlurmSpawner settings are valid" in result.stdout
