"""Cross-site spawn links: ``GET /hub/spawn?opt-...`` from another site shows the
pre-filled form instead of starting a server (issue 10, finding 9).

The rule is pure (:func:`hpcspawner.spawner.spawnlink.link_may_spawn`); the spawner's
``options_from_query`` applies it to the request JupyterHub's SpawnHandler hands it
(``spawner.handler``). That the real hub and a real browser behave so is shown by
tests/integration/test_spawn_page.py.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from fakeslurm import FakeSlurm
from jupyterhub.utils import format_exception
from tornado.httputil import HTTPHeaders
from traitlets.config import Config

from hpcspawner.spawner import SlurmSpawner
from hpcspawner.spawner.spawnlink import SpawnLinkNotConfirmed, link_may_spawn

HUB = "hub.example.org"

CASES = [
    # (headers, may spawn)
    pytest.param({"Sec-Fetch-Site": "none"}, True, id="address-bar-or-bookmark"),
    pytest.param({"Sec-Fetch-Site": "same-origin"}, True, id="link-on-the-hub"),
    pytest.param({"Sec-Fetch-Site": "SAME-ORIGIN "}, True, id="case-and-space"),
    pytest.param({"Sec-Fetch-Site": "cross-site"}, False, id="link-on-another-site"),
    pytest.param({"Sec-Fetch-Site": "same-site"}, False, id="sibling-subdomain"),
    pytest.param({"Sec-Fetch-Site": ""}, False, id="empty-fetch-site"),
    pytest.param({"Sec-Fetch-Site": "bogus"}, False, id="unknown-fetch-site"),
    pytest.param(
        {"Sec-Fetch-Site": "cross-site", "Referer": f"https://{HUB}/hub/home"},
        False,
        id="fetch-site-wins-over-referer",
    ),
    # no Sec-Fetch-Site: an old browser or a script
    pytest.param({"Referer": f"https://{HUB}/hub/home"}, True, id="old-browser-own-referer"),
    pytest.param({"Referer": f"https://{HUB.upper()}/x"}, True, id="own-referer-any-case"),
    pytest.param({"Referer": "https://evil.example/page"}, False, id="foreign-referer"),
    pytest.param({"Referer": f"https://{HUB}.evil.example/"}, False, id="lookalike-referer"),
    pytest.param({"Referer": f"https://{HUB}:8443/"}, False, id="other-port"),
    pytest.param({"Referer": f"https://user@{HUB}/"}, False, id="userinfo-referer"),
    pytest.param({"Referer": "/hub/home"}, False, id="relative-referer"),
    pytest.param({"Referer": "https://[::1/"}, False, id="unparsable-referer"),
    pytest.param({}, False, id="no-headers"),
]


@pytest.mark.parametrize(("headers", "may_spawn"), CASES)
def test_link_may_spawn(headers, may_spawn):
    assert link_may_spawn(HTTPHeaders(headers), HUB) is may_spawn


def test_header_names_are_case_insensitive_with_tornados_headers():
    headers = HTTPHeaders()
    headers.add("sec-fetch-site", "cross-site")
    headers.add("referer", f"https://{HUB}/")
    assert link_may_spawn(headers, HUB) is False


def test_no_request_never_spawns():
    assert link_may_spawn(None, HUB) is False
    assert link_may_spawn(HTTPHeaders({"Referer": f"https://{HUB}/"}), "") is False


def test_the_exception_makes_jupyterhub_serve_the_form_without_an_error():
    error = SpawnLinkNotConfirmed()
    # SpawnHandler: set_status(status_code); headers (JupyterHub 5 reads them); message
    assert error.status_code == 200
    assert error.headers == {}
    assert format_exception(error) == ("", None)


# ---------------------------------------------------------------- the spawner


def make_spawner(headers: dict | None, host: str = HUB) -> SlurmSpawner:
    config = Config()
    config.SlurmSpawner.driver_class = FakeSlurm  # recorded scontrol output, no accounting
    config.SlurmSpawner.partitions = {"debug": {"max_runtime": "1:00:00"}, "remote": {}}
    config.SlurmSpawner.default_options = {"partition": "debug", "memory": "1G", "runtime": "30"}
    spawner = SlurmSpawner(config=config, user=SimpleNamespace(name="linkuser"))
    if headers is not None:
        request = SimpleNamespace(headers=HTTPHeaders(headers), host=host)
        spawner.handler = SimpleNamespace(request=request)
    return spawner


QUERY = {
    "opt-partition": ["remote"],
    "opt-memory": ["2G"],
    "opt-runtime": ["0:12:00"],
}


def test_a_same_origin_link_gives_its_options():
    spawner = make_spawner({"Sec-Fetch-Site": "none"})
    options = spawner.options_from_query(QUERY)
    assert options == {"partition": "remote", "memory": "2G", "runtime": "0:12:00"}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Sec-Fetch-Site": "cross-site"}, id="cross-site"),
        pytest.param({"Referer": "https://evil.example/"}, id="old-browser-foreign-referer"),
        pytest.param({}, id="no-headers"),
        pytest.param(None, id="no-handler"),
    ],
)
def test_a_cross_site_link_starts_nothing_and_prefills_the_form(headers):
    spawner = make_spawner(headers)
    with pytest.raises(SpawnLinkNotConfirmed):
        spawner.options_from_query(QUERY)
    # what JupyterHub does next: render the form (ours), with the link's values in it
    html = asyncio.run(asyncio.wait_for(spawner.render_options_form(), 30))
    assert "hpcspawner-link-notice" in html
    assert "came from another web site" in html
    assert 'value="2G"' in html
    assert 'value="0:12:00"' in html
    # the notice and the values are for this one rendering only
    again = asyncio.run(asyncio.wait_for(spawner.render_options_form(), 30))
    assert "hpcspawner-link-notice" not in again
    assert 'value="2G"' not in again


def test_a_hostile_query_value_is_escaped_in_the_form():
    spawner = make_spawner({"Sec-Fetch-Site": "cross-site"})
    with pytest.raises(SpawnLinkNotConfirmed):
        spawner.options_from_query({"opt-memory": ['"><script>alert(1)</script>']})
    html = asyncio.run(asyncio.wait_for(spawner.render_options_form(), 30))
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;" in html or "&#34;&gt;&lt;script" in html
