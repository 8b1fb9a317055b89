"""Refuse LiteLLM proxy calls from subjects distillguard has decided to block.

A LiteLLM custom callback (pre-call hook). A background thread follows distillguard's decisions
feed (GET /v1/decisions, long poll) with an `enforcer` token and keeps the decisions in force in
memory; every call is checked against that set before it reaches the model, so enforcement adds
no network round trip to a request. Tested against the real proxy (LiteLLM 1.108.7) by
scripts/test-clients; see docs/integrations.md.

Configuration (environment of the proxy process):
  DISTILLGUARD_URL             e.g. https://distillguard.internal:8080
  DISTILLGUARD_ENFORCER_TOKEN  a token with the `enforcer` role
  DISTILLGUARD_ACCOUNT_FIELDS  what distillguard's `account` scope is here: the first of these
                               that a call has, comma-separated, from org_id, team_id, user_id,
                               api_key_hash, api_key_alias, end_user. Use the same list as
                               [sources.litellm] account_fields (default: org_id,team_id,api_key_hash,
                               that list's default)
  DISTILLGUARD_ACTIONS         actions refused, comma-separated (default: block)
  DISTILLGUARD_FAIL_OPEN       "true" (default): while the feed is unreachable, keep the last
                               known decisions and let everyone else through; "false": refuse
                               every call (503) until the feed answers

config.yaml of the proxy (this file on the proxy's PYTHONPATH):
  litellm_settings:
    callbacks: distillguard_enforcer.proxy_handler_instance

Only the Python standard library and what LiteLLM's proxy already installs are used.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from typing import Dict, Iterator, Optional, Tuple

from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger

# Where each of [sources.litellm] account_fields lives on the proxy's UserAPIKeyAuth. distillguard
# reads the same values from the logged payload: `user_api_key_hash` is the auth object's
# `api_key` (LiteLLM hashes `sk-` keys there), `end_user` is the request's `user`.
ACCOUNT_FIELDS = {
    "org_id": "org_id",
    "team_id": "team_id",
    "user_id": "user_id",
    "api_key_hash": "api_key",
    "api_key_alias": "key_alias",
    "end_user": None,
}

# A cursor the server no longer accepts (altered, or from another deployment): pull afresh.
RESTART_STATUSES = {400, 409, 410}


class DecisionSet:
    """Decisions in force, by id; applied from the feed's new/deleted entries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: Dict[int, dict] = {}
        self.cursor: Optional[str] = None

    def apply(self, reply: dict, startup: bool) -> None:
        with self._lock:
            if startup:
                self._by_id.clear()
            for decision in reply.get("deleted", []):
                self._by_id.pop(decision["id"], None)
            for decision in reply.get("new", []):
                self._by_id[decision["id"]] = decision
            self.cursor = reply.get("cursor", self.cursor)

    def find(self, scope: str, value: Optional[str], actions: set) -> Optional[dict]:
        if not value:
            return None
        now = datetime.now(timezone.utc)
        with self._lock:
            for decision in self._by_id.values():
                if decision["scope"] != scope or decision["value"] != value:
                    continue
                if decision["action"] not in actions:
                    continue
                expires = decision.get("expires_at")
                if expires and datetime.fromisoformat(expires.replace("Z", "+00:00")) <= now:
                    continue
                return decision
        return None


def _csv(name: str, default: str) -> list:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


class DistillguardEnforcer(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self.url = os.environ.get("DISTILLGUARD_URL", "http://127.0.0.1:8080").rstrip("/")
        self.token = os.environ.get("DISTILLGUARD_ENFORCER_TOKEN", "")
        self.account_fields = _csv("DISTILLGUARD_ACCOUNT_FIELDS", "org_id,team_id,api_key_hash")
        unknown = [f for f in self.account_fields if f not in ACCOUNT_FIELDS]
        if unknown:
            raise ValueError(f"DISTILLGUARD_ACCOUNT_FIELDS: unknown field(s) {unknown}")
        self.actions = set(_csv("DISTILLGUARD_ACTIONS", "block"))
        self.fail_open = os.environ.get("DISTILLGUARD_FAIL_OPEN", "true") != "false"
        self.decisions = DecisionSet()
        self.healthy = False
        threading.Thread(target=self._follow, name="distillguard-decisions", daemon=True).start()

    def _get(self, query: dict, timeout: float) -> dict:
        request = urllib.request.Request(
            f"{self.url}/v1/decisions?{urllib.parse.urlencode(query)}",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)

    def _pull(self) -> None:
        """One request: the full set when there is no cursor, else a long poll for changes."""
        if self.decisions.cursor is None:
            self.decisions.apply(self._get({"startup": "true"}, 30), startup=True)
            return
        query = {"since": self.decisions.cursor, "stream": "true", "timeout": 25}
        self.decisions.apply(self._get(query, 35), startup=False)

    def _follow(self) -> None:
        backoff = 1.0
        while True:
            try:
                self._pull()
                self.healthy = True
                backoff = 1.0
            except urllib.error.HTTPError as error:
                if error.code in RESTART_STATUSES:
                    self.decisions.cursor = None
                self._wait(backoff)
                backoff = min(backoff * 2, 30.0)
            except (urllib.error.URLError, OSError, ValueError, KeyError):
                self._wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _wait(self, seconds: float) -> None:
        # Keep the last known decisions; try again with growing pauses.
        self.healthy = False
        time.sleep(seconds)

    def _subjects(self, auth, data: dict) -> Iterator[Tuple[str, Optional[str]]]:
        end_user = data.get("user") or getattr(auth, "end_user_id", None)
        yield "end_user", end_user
        yield "api_key", getattr(auth, "api_key", None)
        for field in self.account_fields:
            attribute = ACCOUNT_FIELDS[field]
            value = end_user if attribute is None else getattr(auth, attribute, None)
            if value:
                # distillguard's account is the first field set, as its LiteLLM decoder reads it.
                yield "account", value
                return

    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
        if not self.healthy and not self.fail_open:
            raise HTTPException(status_code=503, detail="abuse decisions unavailable")
        for scope, value in self._subjects(user_api_key_dict, data):
            decision = self.decisions.find(scope, value, self.actions)
            if decision is not None:
                raise HTTPException(
                    status_code=403,
                    detail={
                        "error": "refused by abuse policy",
                        "decision": decision["id"],
                        "action": decision["action"],
                    },
                )
        return data


proxy_handler_instance = DistillguardEnforcer()
