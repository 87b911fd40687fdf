"""The spawn form: reshaping posted data, the context the template sees, the HTML."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from hpcspawner.resources.offer import make_offer, narrow_policy
from hpcspawner.resources.options import (
    OptionsError,
    Policy,
    environments_from_config,
    partition_policies,
    profiles_from_config,
    validate_options,
)
from hpcspawner.slurm.records import Association, parse_nodes, parse_partitions
from hpcspawner.slurm.snapshot import summarize
from hpcspawner.spawner import form

DATA = Path(__file__).parent / "data"


def snapshot(nodes_file="scontrol_nodes_idle.txt"):
    return summarize(
        parse_partitions((DATA / "scontrol_partitions.txt").read_text()),
        parse_nodes((DATA / nodes_file).read_text()),
        taken_at=0.0,
    )


def make_policy(**overrides):
    values = {
        "partitions": partition_policies(
            {
                "debug": {"description": "Quick tests", "max_runtime": "1:00:00"},
                "gpu": {"description": "GPUs"},
            }
        ),
        "environments": environments_from_config(
            {"jupyter": {"description": "JupyterLab"}, "torch": {"modules": ["cuda"]}}
        ),
        "profiles": profiles_from_config(
            {"small": {"description": "1 CPU", "options": {"cpus": 1, "memory": "1G"}}}
        ),
        "defaults": {"partition": "debug", "cpus": 1, "memory": "1G", "runtime": "0:30:00"},
    }
    values.update(overrides)
    return Policy(**values)


@pytest.mark.parametrize(
    ("formdata", "expected"),
    [
        pytest.param({}, {}, id="empty"),
        pytest.param({"cpus": ["2"], "memory": ["4G"]}, {"cpus": "2", "memory": "4G"}, id="values"),
        pytest.param({"cpus": [""], "runtime": ["  "]}, {}, id="blank-means-default"),
        pytest.param({"cpus": [" 2 "]}, {"cpus": "2"}, id="stripped"),
        pytest.param({"cpus": ["2", "3"]}, {"cpus": "2"}, id="first-value-wins"),
        pytest.param({"_xsrf": ["x"], "evil": ["1"]}, {}, id="unknown-fields-dropped"),
        pytest.param({"partition": [b"debug"]}, {"partition": "debug"}, id="bytes"),
        pytest.param({"profile": ["small"]}, {"profile": "small"}, id="profile"),
    ],
)
def test_options_from_form(formdata, expected):
    assert form.options_from_form(formdata) == expected


def test_form_values_go_through_the_one_validator():
    policy = narrow_policy(make_policy(), snapshot())
    options = form.options_from_form({"partition": ["debug"], "runtime": ["2:00:00"]})
    with pytest.raises(OptionsError) as caught:
        validate_options(options, policy)
    assert caught.value.errors == {
        "runtime": "Walltime 2:00:00 exceeds the 1:00:00 limit of partition debug"
    }


def test_partition_rows_combine_policy_and_slurm():
    policy = narrow_policy(make_policy(), snapshot())
    rows = {row.name: row for row in form.partition_rows(policy, snapshot())}
    assert list(rows) == ["debug", "gpu"]
    debug = rows["debug"]
    assert debug.description == "Quick tests"
    assert debug.max_runtime == "1:00:00"
    assert debug.cpus_per_node == 2
    assert debug.max_nodes == 1
    assert debug.free.startswith("1 idle node, 2 CPUs")
    assert rows["gpu"].gpus_per_node == "2 fake"
    assert "2 GPUs" in rows["gpu"].free


def test_partition_rows_without_slurm_answer_show_the_policy_only():
    rows = form.partition_rows(make_policy(), None)
    assert [row.name for row in rows] == ["debug", "gpu"]
    assert all(row.free is None and row.available for row in rows)


def test_busy_cluster_shows_less_free():
    busy = snapshot("scontrol_nodes_busy.txt")
    idle = snapshot()
    policy = narrow_policy(make_policy(), busy)
    free_busy = {row.name: row.free for row in form.partition_rows(policy, busy)}
    free_idle = {row.name: row.free for row in form.partition_rows(policy, idle)}
    assert free_busy != free_idle


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = {}
        self.labels_for = set()
        self.text = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids[attrs["id"]] = (tag, attrs)
        if tag == "label" and "for" in attrs:
            self.labels_for.add(attrs["for"])

    def handle_data(self, data):
        self.text.append(data)


def render(**kwargs):
    policy = kwargs.pop("policy", None) or narrow_policy(make_policy(), snapshot())
    context = form.form_context(
        policy=policy,
        partitions=form.partition_rows(policy, snapshot()),
        values=kwargs.pop("values", {}),
        **kwargs,
    )
    html = form.render(form.default_template(), context)
    collector = _Collector()
    collector.feed(html)
    return html, collector


def test_every_input_has_a_label():
    html, page = render()
    inputs = [i for i, (tag, a) in page.ids.items() if tag in ("input", "select")]
    assert inputs
    for input_id in inputs:
        assert input_id in page.labels_for, f"#{input_id} has no <label for>"


def test_errors_are_shown_next_to_their_fields_and_values_kept():
    html, page = render(
        values={"runtime": "2:00:00", "partition": "debug"},
        errors={"runtime": "Walltime 2:00:00 exceeds the 1:00:00 limit of partition debug"},
    )
    assert "error-runtime" in page.ids
    assert page.ids["field-runtime"][1]["value"] == "2:00:00"
    assert "is-invalid" in page.ids["field-runtime"][1]["class"]
    assert "checked" in page.ids["partition-debug"][1]


def test_user_input_is_escaped():
    html, _ = render(values={"memory": '"><script>alert(1)</script>'}, errors={})
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;" in html or "&#34;&gt;&lt;script" in html


def test_stale_cluster_view_is_announced():
    _, page = render(cluster_error="squeue timed out", stale=True, cluster_age="3 minutes")
    assert "hpc-cluster-stale" in page.ids
    assert "3 minutes ago" in "".join(page.text)


def test_accounts_come_from_associations_within_the_admin_list():
    offer = make_offer(
        make_policy(accounts=("projA", "projB")),
        snapshot=snapshot(),
        associations=[assoc("projB"), assoc("projC")],
    )
    context = form.form_context(policy=offer.policy, partitions=[], values={})
    account = next(f for f in context["choice_fields"] if f["name"] == "account")
    assert account["choices"] == ["projB"]
    qos = next(f for f in context["choice_fields"] if f["name"] == "qos")
    assert qos["choices"] == ["normal"]


def test_listed_reservations_are_offered_next_to_the_accounts_and_qos():
    # every choice field has the keys the template reads (labels, accounts): a listed
    # reservation once made the whole page fail to render
    policy = narrow_policy(make_policy(reservations=("maint", "course")), snapshot())
    html, page = render(policy=policy)
    assert page.ids["field-reservation"][0] == "select"
    assert '<option value="course"' in html
    assert ">course</option>" in html


def assoc(account: str) -> Association:
    return Association(account=account, qos=("normal",), default_qos=None, partition=None)


def test_without_custom_values_only_presets_are_offered():
    policy = make_policy(allow_custom=False)
    _, page = render(policy=policy)
    assert "profile-small" in page.ids
    assert "field-cpus" not in page.ids
    assert "profile-none" not in page.ids
    with pytest.raises(OptionsError) as caught:
        validate_options({"profile": "small", "cpus": 4}, policy)
    assert "custom values (cpus) are disabled" in caught.value.errors["options"]
    assert validate_options({"profile": "small"}, policy).cpus == 1
