"""From what the user sent to a validated request: the spawn form, spawn links, the REST
API's ``user_options``, the login's accounts, and JupyterHub's ``apply_user_options`` hook.

:class:`UserRequest` is the part of :class:`~hpcspawner.spawner.SlurmSpawner` that
JupyterHub calls before a start (``options_from_form``, ``options_from_query``,
``render_options_form``, ``run_auth_state_hook``, ``apply_user_options``). The arithmetic is
elsewhere: :func:`hpcspawner.resources.offer.make_offer` intersects the admin's settings, the
login's accounts and the cluster; :func:`hpcspawner.resources.options.validate_options`
checks the request against that offer; :mod:`~hpcspawner.spawner.page` renders the form.
It uses the spawner's ``policy``, ``cluster_info``, ``user``, ``orm_spawner``, ``log_name``
and ``options_form_template``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools

from traitlets import Any, HasTraits, List, Unicode, default

from ..accounts.authstate import login_accounts
from ..resources.offer import Offer, make_offer
from ..resources.options import OptionsError, validate_options
from . import form, page
from .clusterinfo import ClusterView
from .errors import SpawnFailure


class UserRequest(HasTraits):
    """The spawner's request hooks (a mixin of SlurmSpawner, before JupyterHub's Spawner)."""

    # JupyterHub 5 sets the REST API's JSON body as user_options without looking at its
    # type (JupyterHub 6 checks it first): a body such as ``42`` failed Spawner's Dict
    # check inside JupyterHub, a 500 that left the server listed as pending. Any value is
    # taken here; the one validator refuses what is not an object, with a 400.
    user_options = Any(
        help="""The options of this start, as the user sent them (hostile: validated
        by hpcspawner.resources.options.validate_options before use)."""
    )

    @default("user_options")
    def _default_user_options(self):
        return {}

    # ------------------------------------------------------------ identity from the login

    #: Slurm accounts the login says the user may charge (None: not known from the login)
    auth_accounts = List(Unicode(), default_value=None, allow_none=True)

    async def run_auth_state_hook(self, auth_state):
        """Take what :class:`hpcspawner.auth.ClusterOAuthenticator` learned at login.

        ``auth_state["hpcspawner"]["accounts"]`` limits the accounts this user may
        charge; then the admin's own ``auth_state_hook`` runs.
        """
        self.auth_accounts = login_accounts(auth_state)
        return await super().run_auth_state_hook(auth_state)

    async def _offer(self) -> tuple[Offer, ClusterView]:
        """What this user may start now (see :mod:`hpcspawner.resources.offer`), and the
        cluster view it was made from."""
        try:
            policy = self.policy
        except ValueError as e:
            raise SpawnFailure(
                "The hub's server settings are invalid; please tell the administrators.",
                reason="invalid-config",
                log_message=str(e),
                status_code=500,
            ) from None
        view = await self.cluster_info.snapshot()
        associations = await self.cluster_info.associations(self.user.name)
        accounting = await self.cluster_info.accounting(self.user.name)
        offer = make_offer(
            policy,
            login_accounts=self.auth_accounts,
            snapshot=view.snapshot,
            associations=associations,
            qos_limits=accounting.qos,
            accounting=accounting.user,
        )
        if accounting.notice:
            offer = dataclasses.replace(offer, accounting_notice=accounting.notice)
        return offer, view

    async def validated_request(self):
        offer, _ = await self._offer()
        raw = self.user_options or {}
        try:
            return validate_options(raw, offer.policy)
        except OptionsError as e:
            self.spawn_page.refused(raw, e.errors)
            raise SpawnFailure(
                f"Invalid server options: {e.summary()}", reason="invalid-options"
            ) from None

    @default("apply_user_options")
    def _default_apply_user_options(self):
        # JupyterHub >= 5.3 calls this hook before pre_spawn_hook and start(); without one
        # it logs "Received unhandled user_options" on every spawn.  Our hook is the one
        # validation; JupyterHub passes its SpawnFailure (an HTTPError, 400) through.
        return _apply_user_options

    async def _applied_request(self):
        """The request the hook validated for this spawn, taken once; validated afresh
        when the hook did not run (an admin's own hook) or the options changed since
        (a pre_spawn_hook)."""
        applied, self._applied = self._applied, None
        if applied is not None and applied[0] == (self.user_options or {}):
            return applied[1]
        return await self.validated_request()

    def options_from_form(self, formdata):
        return form.options_from_form(formdata)

    def options_from_query(self, query_data):
        """``/hub/spawn?opt-partition=debug&opt-cpus=2`` links: JupyterHub 6 strips the
        ``opt-`` prefix itself, JupyterHub 5 passes the keys as they are.

        A link from another site (:func:`hpcspawner.spawner.spawnlink.link_may_spawn`) starts
        nothing: the form comes instead, pre-filled with the link's values."""
        options = self.options_from_form(page.unprefixed(query_data))
        request = getattr(getattr(self, "handler", None), "request", None)
        self.spawn_page.check_link(options, request, self.log, self.log_name)
        return options

    @functools.cached_property
    def spawn_page(self) -> page.SpawnPage:
        """What this spawner's next form shows of a refused request (not config)."""
        return page.SpawnPage()

    async def render_options_form(self) -> str:
        offer, view = await self._offer()
        return page.render(
            offer,
            view,
            feedback=page.feedback_for(self),
            stored_options=getattr(self.orm_spawner, "user_options", None),
            last_end=self._last_end,
            template_path=self.options_form_template,
            usage=await self.cluster_info.usage(self.user.name),
        )

    #: (user_options, request) the apply_user_options hook validated for this spawn
    _applied: tuple[dict, object] | None = None


async def _apply_user_options(spawner: UserRequest, user_options: dict) -> None:
    """The default ``c.Spawner.apply_user_options`` of SlurmSpawner: validate, keep the result.

    JupyterHub passes ``spawner.user_options``, which is what ``validated_request`` reads."""
    request = await spawner.validated_request()
    spawner._applied = (copy.deepcopy(dict(spawner.user_options or {})), request)
