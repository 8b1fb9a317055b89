"""Refuse LiteLLM proxy calls from subjects distillguard has decided to block.

A LiteLLM custom callback (pre-call hook). A background thread follows distillguard's decisions
feed (GET /v1/decisions, long poll) with an `enforcer` token and keeps the decisions in force in
memory; every call is checked against that set before it reaches the model, so enforcement adds
no network round trip to a request.

Configuration (environment of the proxy process):
  DISTILLGUARD_URL             e.g. https://distillguard.internal:8080
  DISTILLGUARD_ENFORCER_TOKEN  a token with the `enforcer` role
  DISTILLGUARD_ACCOUNT_FIELD   what distillguard's `account` scope means here: team_id (default),
                               org_id, user_id or api_key (match [sources.litellm] account_fields)
  DISTILLGUARD_ACTIONS         actions refused, comma-separated (default: block)
  DISTILLGUARD_FAIL_OPEN       "true" (default): while the feed is unreachable, keep the last
                               known decisions and let everyone else through

config.yaml of the proxy (this file next to it, on the proxy's PYTHONPATH):
  litellm_settings:
    callbacks: distillguard_enforcer.proxy_handler_instance

Only the Python standard library and LiteLLM itself are used.
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
from typing import Dict, Optional, Tuple

from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger

Key = Tuple[str, str]  # (scope, value)


class DecisionSet:
    """Decisions in force, by (scope, value); applied from the feed's new/deleted entries."""

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


class DistillguardEnforcer(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self.url = os.environ.get("DISTILLGUARD_URL", "http://127.0.0.1:8080").rstrip("/")
        self.token = os.environ.get("DISTILLGUARD_ENFORCER_TOKEN", "")
        self.account_field = os.environ.get("DISTILLGUARD_ACCOUNT_FIELD", "team_id")
        self.actions = {
            a.strip()
            for a in os.environ.get("DISTILLGUARD_ACTIONS", "block").split(",")
            if a.strip()
        }
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

    def _follow(self) -> None:
        backoff = 1.0
        while True:
            try:
                if self.decisions.cursor is None:
                    self.decisions.apply(self._get({"startup": "true"}, 30), startup=True)
                query = {"since": self.decisions.cursor, "stream": "true", "timeout": 25}
                self.decisions.apply(self._get(query, 35), startup=False)
                self.healthy = True
                backoff = 1.0
            except (urllib.error.URLError, OSError, ValueError, KeyError):
                # Keep the last known decisions; try again with growing pauses.
                self.healthy = False
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    def _subjects(self, user_api_key_dict, data: dict):
        yield "end_user", data.get("user") or getattr(user_api_key_dict, "end_user_id", None)
        yield "api_key", getattr(user_api_key_dict, "api_key", None)
        account_attr = {"api_key": "api_key"}.get(self.account_field, self.account_field)
        yield "account", getattr(user_api_key_dict, account_attr, None)

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
