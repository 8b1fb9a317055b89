"""Virtual keys for the LiteLLM proxy test without LiteLLM's database: a custom auth hook that
returns the same UserAPIKeyAuth a database key would (LiteLLM hashes `sk-` keys in it)."""

from fastapi import Request
from litellm.proxy._types import UserAPIKeyAuth

# key -> team; a key without a team is its own account (distillguard then uses the key's hash).
TEAMS = {
    "sk-team-harvest": "team-harvest",
    "sk-team-benign": "team-benign",
    "sk-solo-late": None,
    "sk-solo-benign": None,
}


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    key = api_key.removeprefix("Bearer ").strip()
    if key not in TEAMS:
        raise Exception("unknown key")
    return UserAPIKeyAuth(api_key=key, team_id=TEAMS[key])
