"""No sign-in page can lock an AD account: 1,000 wrong passwords, 50 at a time, in every spelling of one
account's name, against a person whose fine-grained policy locks after 3; AD's badPwdCount stops at 2, and the
right password works again once the policy's window has passed.

The IdP here has no per-address limit, neither on failures nor on requests (either would otherwise stop the
flood long before the account's own count is tested), and a 10 s window, as short as the settings allow."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select

from idp.settings import load_settings
from idp.store.db import Database
from idp.store.models import AuditEvent
from tests.e2e.ad_admin import AdAdmin
from tests.e2e.browser import Browser
from tests.e2e.harness import IdpServer, base_config, eventually, free_port, prepare_idp, serve_idp

pytestmark = pytest.mark.ad

PASSWORD = "Passw0rd!Lena"
THRESHOLD = 3
WINDOW = 10  # seconds, the policy's and the IdP's
SPELLINGS = (
    "lena",
    "LENA",
    "\uff4c\uff45\uff4e\uff41",  # full-width
    "le\u00adna",  # a soft hyphen
    "le\u200bna",  # a zero-width space
    "CORP\\lena",
    "corp\\LENA",
    "lena@corp.example.com",  # the UPN
    "lena.mail@corp.example.com",  # the mail address, unlike the UPN
    "LENA.MAIL@CORP.EXAMPLE.COM",
)


@dataclass
class Target:
    server: IdpServer
    ad: AdAdmin


@pytest.fixture(scope="module")
def target(samba_dc, tmp_path_factory) -> Iterator[Target]:
    ad = AdAdmin(samba_dc)
    user = ad.add_user("lena", PASSWORD, mail="lena.mail@corp.example.com")
    ad.apply_lockout(user, threshold=THRESHOLD, window_seconds=WINDOW)
    root = tmp_path_factory.mktemp("lockout-idp")
    port = free_port()
    config = base_config(root, f"http://127.0.0.1:{port}", samba_dc.ldap_settings())
    config["login"] = {"failure_window": WINDOW, "max_failures_per_ip": 0}
    config["server"]["rate_limit_per_minute"] = 0
    server = serve_idp(prepare_idp(root, config), port)
    try:
        yield Target(server, ad)
    finally:
        server.stop()
        ad.undo()


def _signin_failures(server: IdpServer, username: str) -> dict[str, int]:
    db = Database(load_settings(server.config).database_url)
    try:
        with db.engine.connect() as conn:
            rows = conn.execute(
                select(AuditEvent.reason, func.count())
                .where(AuditEvent.event == "signin", AuditEvent.result == "failure", AuditEvent.username == username)
                .group_by(AuditEvent.reason)
            )
            return {reason: count for reason, count in rows}
    finally:
        db.dispose()


def _guess(base_url: str, worker: int, tries: int, statuses: Counter[int], lock: threading.Lock) -> None:
    with httpx.Client(timeout=60) as client:
        page = client.get(base_url + "/login")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        for n in range(tries):
            # Distinct wrong passwords: AD does not count a repeat of a recent one.
            form = {"username": SPELLINGS[n % len(SPELLINGS)], "password": f"Wrong-{worker}-{n}", "csrf_token": token}
            status = client.post(base_url + "/login", data=form).status_code
            with lock:
                statuses[status] += 1


def test_a_thousand_parallel_guesses_never_lock_the_account(target: Target) -> None:
    base_url, ad = target.server.base_url, target.ad
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    workers = [threading.Thread(target=_guess, args=(base_url, w, 20, statuses, lock)) for w in range(50)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()

    assert sum(statuses.values()) == 1000 and set(statuses) <= {401, 429}, statuses
    assert ad.bad_password_count("lena") == THRESHOLD - 1
    assert ad.lockout_time("lena") == 0
    # Every guess is recorded under her account's name, however it was spelt; two reached AD.
    assert _signin_failures(target.server, "lena") == {"invalid_credentials": THRESHOLD - 1, "throttled": 998}
    assert statuses[401] == THRESHOLD - 1

    def signs_in() -> bool:
        browser = Browser()
        page = browser.login(browser.get(base_url + "/login"), SPELLINGS[2], PASSWORD)
        return page.status == 200 and not page.is_login

    eventually(signs_in, within=90, what="the right password works again once the window has passed")
    assert ad.lockout_time("lena") == 0
    assert _signin_failures(target.server, "lena")["invalid_credentials"] == THRESHOLD - 1
