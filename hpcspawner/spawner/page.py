"""The spawn page of one spawner: what its next form shows, and the page put together.

:mod:`~hpcspawner.spawner.form` stays the pure part (posted data -> ``user_options``,
policy -> the template's context -> HTML), tested without a spawner. This module holds
what is not a function of its inputs: the state between a refused request and the form
that shows it (:class:`SpawnPage`, one per spawner), the notices above the form, and
the admin's template file. Kept apart from form.py so that the state has one owner
and form.py stays pure.

How JupyterHub (5.4.1 and 6.1.1, ``SpawnHandler`` in ``jupyterhub/handlers/pages.py``)
shows the form after a refusal:

- A ``GET /hub/spawn?opt-...`` link that may not start (:mod:`.spawnlink`):
  ``options_from_query`` raises, and the handler renders the form of the same spawner.
- A refused ``POST /hub/spawn[/<user>/<server>]``: the spawn fails inside the request
  (the ``apply_user_options`` hook or ``start()`` raise), then the handler renders
  ``user.spawner.get_options_form()``: the spawner of the user's *default* server.
  For the default server that is the spawner that refused (``User.stop`` keeps a
  spawner whose spawn failed in ``user.spawners``); for a named server it is another.
- The next request for that server replaces a failed spawner with a new one
  (``replace_failed=True``): what a refusal left is never shown twice.

JupyterHub has no public hook that hands a refusal to the form it renders next. So
each spawner keeps its own refusal, and the default server's spawner also takes the
newest one that its user's other spawners keep (:func:`feedback_for`);
``tests/unit/test_page.py`` pins both JupyterHub behaviours this relies on.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ..logtext import loggable
from ..resources.offer import Offer
from . import form, spawnlink
from .clusterinfo import ClusterView

LINK_NOTICE = (
    '<div class="alert alert-info hpcspawner-link-notice">This link to start a server came '
    "from another web site, so nothing was started. Check the options below and press "
    "Start if you want this server.</div>\n"
)


def last_end_notice(last_end: Mapping) -> str:
    """Why the user's last server ended underneath them (``{"job_id", "reason"}``), as HTML."""
    text = f"Your last server (job {last_end['job_id']}) stopped: {last_end['reason']}."
    return f'<div class="alert alert-warning hpcspawner-last-end">{html.escape(text)}</div>\n'


@dataclass(frozen=True)
class Feedback:
    """What the next form shows of a refused request: its values, the errors, a notice."""

    values: dict
    errors: dict = field(default_factory=dict)
    #: a link from another site: nothing was started, the form says so
    link: bool = False
    #: ``time.monotonic()`` when it was left (the newest one is shown)
    at: float = 0.0


class SpawnPage:
    """One spawner's page state: the refusal its next form shows, once."""

    def __init__(self):
        self._feedback: Feedback | None = None

    def refused(self, options, errors: Mapping[str, str]) -> None:
        """The validator refused ``options`` (any value: a REST body may be no object)."""
        self._feedback = Feedback(_as_dict(options), dict(errors), at=time.monotonic())

    def check_link(self, options: dict, request, log, log_name: str) -> None:
        """Raise :class:`~.spawnlink.SpawnLinkNotConfirmed` for a link from another site,
        leaving its ``options`` for the form; ``request`` is the handler's (or None)."""
        headers = getattr(request, "headers", None)
        if spawnlink.link_may_spawn(headers, getattr(request, "host", "") or ""):
            return
        log.info(
            "Not starting %s from a link from another site (Sec-Fetch-Site %s, Referer %s)",
            log_name,
            loggable((headers or {}).get("Sec-Fetch-Site"), 40),
            loggable((headers or {}).get("Referer"), 200),
        )
        self._feedback = Feedback(dict(options), link=True, at=time.monotonic())
        raise spawnlink.SpawnLinkNotConfirmed()

    def take(self) -> Feedback | None:
        feedback, self._feedback = self._feedback, None
        return feedback


def feedback_for(spawner) -> Feedback | None:
    """The refusal that ``spawner``'s form shows now (taken): its own and, for the
    default server, the newest of its user's servers (JupyterHub renders the default
    server's form after any server's refused form: see above)."""
    others = []
    if not spawner.name:
        spawners = getattr(spawner.user, "spawners", None) or {}
        others = [
            other.spawn_page
            for other in spawners.values()
            if other is not spawner and isinstance(getattr(other, "spawn_page", None), SpawnPage)
        ]
    return take_feedback(spawner.spawn_page, others)


def take_feedback(own: SpawnPage, others: Iterable[SpawnPage] = ()) -> Feedback | None:
    """The newest refusal that ``own`` and ``others`` keep; all of them are taken."""
    left = [feedback for page in (own, *others) if (feedback := page.take()) is not None]
    return max(left, key=lambda feedback: feedback.at, default=None)


def unprefixed(query_data: Mapping) -> dict:
    """A spawn link's query without the ``opt-`` prefixes (JupyterHub 5 leaves them)."""
    return {key.removeprefix("opt-"): value for key, value in query_data.items()}


def render(
    offer: Offer,
    view: ClusterView,
    *,
    feedback: Feedback | None,
    stored_options=None,
    last_end: Mapping | None = None,
    template_path: str = "",
    usage=None,
) -> str:
    """The spawn page's HTML: the notices, then the form (the admin's template, if any).

    The form shows ``feedback``'s values and errors, or else ``stored_options`` (the
    last start's ``user_options``); ``usage`` is the user's use of their accounts
    (:meth:`~hpcspawner.spawner.clusterinfo.ClusterInfo.usage`, None: not shown)."""
    if feedback is not None:
        values, errors = feedback.values, feedback.errors
    else:
        values, errors = _as_dict(stored_options), {}
    if template_path:
        with open(template_path) as f:
            template = f.read()
    else:
        template = form.default_template()
    context = form.form_context(
        policy=offer.policy,
        partitions=form.partition_rows(offer.policy, offer.snapshot),
        values=values,
        errors=errors,
        cluster_error=view.error,
        stale=view.stale,
        cluster_age=_format_age(view.age_s),
        cluster_taken_at=_format_timestamp(view.snapshot.taken_at) if view.snapshot else None,
        usage=form.usage_lines(usage),
        accounting_notice=offer.accounting_notice,
    )
    rendered = form.render(template, context)
    if feedback is not None and feedback.link:
        rendered = LINK_NOTICE + rendered
    if last_end:
        rendered = last_end_notice(last_end) + rendered
    return rendered


def _as_dict(options) -> dict:
    """``user_options`` as a dict for the form: a stored body that was no object is none."""
    return dict(options) if isinstance(options, dict) else {}


def _format_age(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    if seconds < 120:
        return f"{seconds:.0f} seconds"
    return f"{seconds / 60:.0f} minutes"


def _format_timestamp(when: float) -> str:
    return datetime.fromtimestamp(when).strftime("%H:%M:%S")
