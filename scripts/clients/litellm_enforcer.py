"""The distillguard enforcer in the real LiteLLM proxy (run by scripts/test-clients).

Two distillguard servers, one whose accounts are end users ([decisions] scope = "end_user") and
one whose accounts are LiteLLM's (team, else key hash: the default [sources.litellm]
account_fields), each followed by a LiteLLM proxy with deploy/litellm/distillguard_enforcer.py,
in front of a stub model. Decisions come the real way: a simulated harvester's traffic is
ingested, the finding confirmed through the review API.

Shows: subjects confirmed before the proxy started are refused (403) and never reach the model,
others pass; a subject confirmed while the proxy runs is refused within seconds (the long poll);
a dismissed one passes again; with distillguard down, the last known decisions still hold.

    python litellm_enforcer.py DISTILLGUARD_BINARY WORK_DIR
"""

import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "litellm"
TOKENS = {"ingest": "ingest-litellm", "analyst": "analyst-litellm", "enforcer": "enforcer-litellm"}
# How soon a decision made while the proxy runs must be enforced: the long poll answers at once,
# so this is generous for a loaded CI machine.
PICKUP_BOUND_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method, url, token=None, body=None, timeout=30.0):
    """(status, parsed JSON or text) without raising on HTTP errors."""
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_until(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Processes:
    def __init__(self, work: Path):
        self.work, self.running = work, []

    def start(self, name, argv, env=None):
        log = open(self.work / f"{name}.log", "wb")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.running.append((name, process))
        return process

    def dump(self):
        for name, _ in self.running:
            text = (self.work / f"{name}.log").read_text(errors="replace")
            print(f"--- {name}.log (last 60 lines)\n" + "\n".join(text.splitlines()[-60:]), file=sys.stderr)

    def stop(self):
        for _, process in self.running:
            process.terminate()
        for _, process in self.running:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


class Distillguard:
    """A server of its own, and the harvester's traffic under any account name."""

    def __init__(self, processes, binary, work: Path, name, scope, harvester):
        self.port, self.harvester = free_port(), harvester
        # Each account's copy of the harvester comes after the last: the server's clock is event
        # time, and traffic from before it is late.
        self.next_shift = timedelta(0)
        times = [datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) for e in harvester]
        self.span = max(times) - min(times) + timedelta(minutes=10)
        self.base = f"http://127.0.0.1:{self.port}"
        config = work / f"{name}.toml"
        config.write_text(f'[decisions]\nscope = "{scope}"\n')
        tokens = ",".join(f"{role}:{token}" for role, token in TOKENS.items())
        self.process = processes.start(name, [binary, "serve", "--config", str(config), "--listen",
                               f"127.0.0.1:{self.port}", "--data-dir", str(work / name),
                               "--fsync", "none", "--auth-tokens", tokens, "--log", "warn"])

    def ready(self):
        try:
            return call("GET", f"{self.base}/readyz", timeout=2)[0] == 200
        except OSError:
            return False

    def confirm(self, account):
        """Ingest the harvester as `account`, wait for its finding, confirm it."""
        lines = []
        for i, event in enumerate(self.harvester):
            at = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")) + self.next_shift
            event = dict(event, account_id=account, request_id=f"{account}-{i}",
                         timestamp=at.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
            lines.append(json.dumps(event))
        self.next_shift += self.span
        status, reply = call("POST", f"{self.base}/v1/events", TOKENS["ingest"],
                             ("\n".join(lines) + "\n").encode())
        assert status == 202, (status, reply)
        path = f"{self.base}/v1/accounts/{urllib.request.quote(account, safe='')}"
        found = wait_until(f"a finding for {account}",
                           lambda: (lambda r: r[0] == 200 and r[1])(call("GET", path, TOKENS["analyst"])), 60)
        version = found["summary"]["review"]["version"]
        self.review(account, {"status": "confirmed", "close_reason": "true_positive", "version": version})

    def dismiss(self, account):
        found = call("GET", f"{self.base}/v1/accounts/{account}", TOKENS["analyst"])[1]
        version = found["summary"]["review"]["version"]
        self.review(account, {"status": "open", "version": version})
        self.review(account, {"status": "dismissed", "close_reason": "false_positive", "version": version + 1})

    def review(self, account, change):
        status, reply = call("PATCH", f"{self.base}/v1/accounts/{account}/review", TOKENS["analyst"], change)
        assert status == 200, (account, change, status, reply)


class Proxy:
    """The real LiteLLM proxy with the enforcer following `distillguard`."""

    answered = 0  # calls of every proxy that came back 200: the stub model must have seen as many

    def __init__(self, processes, venv: Path, name, distillguard, stub_base):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ,
                   PYTHONPATH=os.pathsep.join([str(ROOT / "deploy/litellm"), str(HERE)]),
                   STUB_MODEL_BASE=stub_base,
                   LITELLM_LOCAL_MODEL_COST_MAP="True",  # no download of the price list
                   LITELLM_MASTER_KEY="sk-" + secrets.token_hex(32),  # it refuses to start without
                   DISTILLGUARD_URL=distillguard.base,
                   DISTILLGUARD_ENFORCER_TOKEN=TOKENS["enforcer"])
        self.process = processes.start(name, [str(venv / "bin/litellm"), "--config", str(HERE / "config.yaml"),
                                              "--host", "127.0.0.1", "--port", str(self.port)], env)

    def ready(self):
        assert self.process.poll() is None, "the LiteLLM proxy exited"
        try:
            return call("GET", f"{self.base}/health/liveliness", timeout=2)[0] == 200
        except OSError:
            return False

    def chat(self, key="sk-team-benign", user=None):
        body = {"model": "stub", "messages": [{"role": "user", "content": "hello"}]}
        if user:
            body["user"] = user
        reply = call("POST", f"{self.base}/v1/chat/completions", key, body)
        Proxy.answered += reply[0] == 200
        return reply


def refused(reply):
    status, body = reply
    return status == 403 and "refused by abuse policy" in json.dumps(body)


def passed(reply):
    status, body = reply
    return status == 200 and body["choices"][0]["message"]["content"] == "stub answer"


def check(what, reply, expect):
    ok = expect(reply)
    print(f"  {'ok ' if ok else 'BAD'} {what}: {reply[0]}")
    assert ok, f"{what}: {reply}"


def harvester_events(binary, work: Path):
    """300 requests of the simulator's bulk harvester (seed 11, as tests/api uses)."""
    simulate = subprocess.run([binary, "simulate", "--seed", "11", "--accounts", "100", "--out",
                               str(work / "day.ndjson"), "--labels", str(work / "labels.json")],
                              capture_output=True, text=True)
    assert simulate.returncode == 0, simulate.stdout + simulate.stderr
    labels = json.loads((work / "labels.json").read_text())
    harvester = next(a for a, label in labels.items() if label["archetype"] == "bulk_harvest")
    events = []
    with open(work / "day.ndjson") as day:
        for line in day:
            event = json.loads(line)
            if event["account_id"] == harvester:
                events.append(event)
                if len(events) == 300:
                    break
    return events


def the_docs_quote_the_tested_config():
    config = (HERE / "config.yaml").read_text()
    snippet = config[config.index("litellm_settings:"):].strip()
    docs = (ROOT / "docs/integrations.md").read_text()
    assert snippet in docs, f"docs/integrations.md must quote the tested config:\n{snippet}"


def main():
    binary, work = sys.argv[1], Path(sys.argv[2])
    venv = Path(sys.executable).parent.parent
    the_docs_quote_the_tested_config()
    started = time.monotonic()
    harvester = harvester_events(binary, work)
    processes = Processes(work)
    try:
        stub_port = free_port()
        stub_base = f"http://127.0.0.1:{stub_port}/v1"
        processes.start("stub-model", [sys.executable, str(Path(__file__).parent / "stub_model.py"), str(stub_port)])
        by_user = Distillguard(processes, binary, work, "dg-end-users", "end_user", harvester)
        by_account = Distillguard(processes, binary, work, "dg-accounts", "account", harvester)
        wait_until("distillguard", lambda: by_user.ready() and by_account.ready(), 30)

        # Decided before the proxies start: they must come in with the startup pull.
        by_user.confirm("u-harvest")
        by_account.confirm("team-harvest")

        user_proxy = Proxy(processes, venv, "litellm-end-users", by_user, stub_base)
        account_proxy = Proxy(processes, venv, "litellm-accounts", by_account, stub_base)
        proxy_start = time.monotonic()
        wait_until("the LiteLLM proxies", lambda: user_proxy.ready() and account_proxy.ready(), 120)
        print(f"  LiteLLM proxies answered after {time.monotonic() - proxy_start:.1f} s")
        wait_until("the startup pull", lambda: refused(user_proxy.chat(user="u-harvest")), PICKUP_BOUND_S)

        print("== decided before the proxy started")
        check("end user u-harvest refused", user_proxy.chat(user="u-harvest"), refused)
        check("end user u-benign passes", user_proxy.chat(user="u-benign"), passed)
        check("no end user passes", user_proxy.chat(), passed)
        check("team-harvest's key refused", account_proxy.chat(key="sk-team-harvest"), refused)
        check("team-harvest's key refused whatever the end user",
              account_proxy.chat(key="sk-team-harvest", user="u-benign"), refused)
        check("team-benign's key passes", account_proxy.chat(key="sk-team-benign"), passed)
        check("a teamless key passes", account_proxy.chat(key="sk-solo-late"), passed)

        print("== decided while the proxy runs (long poll)")
        check("end user u-late passes before", user_proxy.chat(user="u-late"), passed)
        by_user.confirm("u-late")
        decided = time.monotonic()
        wait_until("u-late refused", lambda: refused(user_proxy.chat(user="u-late")), PICKUP_BOUND_S)
        print(f"  ok end user u-late refused {time.monotonic() - decided:.1f} s after the confirmation")
        # A key without a team is its own account at distillguard: the key's hash, as LiteLLM logs it.
        key_hash = hashlib.sha256(b"sk-solo-late").hexdigest()
        by_account.confirm(key_hash)
        decided = time.monotonic()
        wait_until("sk-solo-late refused", lambda: refused(account_proxy.chat(key="sk-solo-late")), PICKUP_BOUND_S)
        print(f"  ok teamless key sk-solo-late (account {key_hash[:12]}...) refused "
              f"{time.monotonic() - decided:.1f} s after the confirmation")
        check("another teamless key passes", account_proxy.chat(key="sk-solo-benign"), passed)

        print("== dismissed while the proxy runs")
        by_user.dismiss("u-harvest")
        wait_until("u-harvest passing again", lambda: passed(user_proxy.chat(user="u-harvest")), PICKUP_BOUND_S)
        print("  ok end user u-harvest passes again after the dismissal")

        print("== distillguard down (fail open: the last known decisions hold)")
        by_user.process.kill()  # an outage, not a shutdown (which waits for open long polls)
        by_user.process.wait(10)
        time.sleep(1)  # the long poll's connection drops; the enforcer keeps what it has
        check("end user u-late still refused", user_proxy.chat(user="u-late"), refused)
        check("end user u-benign still passes", user_proxy.chat(user="u-benign"), passed)

        stub_calls = call("GET", f"http://127.0.0.1:{stub_port}/calls")[1]["calls"]
        assert stub_calls == Proxy.answered, (stub_calls, Proxy.answered)
        print(f"  ok the stub model saw {stub_calls} calls, the ones that passed: refused ones never reached it")
        print(f"litellm enforcer: all checks passed in {time.monotonic() - started:.0f} s")
    except BaseException:
        processes.dump()
        raise
    finally:
        processes.stop()


if __name__ == "__main__":
    main()
