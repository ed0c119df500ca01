"""Benchmark `idp sync`: a first full sync of many AD users against the Alibaba Mail emulator held to its
documented 40 requests/s, then no-change re-syncs (full and incremental), then an incremental run after a new
mail-enabled group and a deleted person.

    .venv/bin/python bench/bench_sync.py --users 10000      # about 5 minutes: 10,000 creates at 40/s
    .venv/bin/python bench/bench_sync.py --users 500        # a quick look

It provisions a Samba AD DC of its own on --ip (needs root), bulk-loads the users with one ldbadd straight
into the DC's sam.ldb (seconds for 10,000), and stops the DC at the end.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ldap3 import MODIFY_REPLACE

from idp.demo.alimail_emulator import RunningEmulator, run_emulator
from idp.demo.samba_dc import BASE_DN, SambaDC, ensure_dc
from idp.directory.listing import DirectoryListing, Scope
from idp.provisioning.alimail import AlimailProvider, AlimailSettings
from idp.provisioning.sync import MailboxSync
from idp.settings import LdapSettings, ProvisioningSettings
from idp.store.db import Database
from tests.e2e.ad_admin import AdAdmin

OU = f"OU=Bench,{BASE_DN}"
DEPARTMENTS = ("Sales", "Engineering/Platform", "Engineering/Apps", "Finance", "Support", "HR", "Legal", "IT")
_UF_NORMAL_ACCOUNT, _UF_PASSWD_NOTREQD = 0x200, 0x20
LOAD_BATCH = 500


def users_ldif(start: int, stop: int) -> str:
    # No passwords: the sync never binds as these people, and hashing 10,000 passwords is what makes
    # bulk loads slow. PASSWD_NOTREQD lets an enabled account exist without one.
    entries = [f"dn: {OU}\nobjectClass: organizationalUnit"] if start == 0 else []
    for i in range(start, stop):
        name = f"bench{i:05d}"
        entries.append(
            "\n".join(
                [
                    f"dn: CN={name},{OU}",
                    "objectClass: user",
                    f"sAMAccountName: {name}",
                    f"userPrincipalName: {name}@corp.example.com",
                    "givenName: Bench",
                    f"sn: User{i:05d}",
                    f"displayName: Bench User {i:05d}",
                    f"mail: {name}@example.com",
                    f"department: {DEPARTMENTS[i % len(DEPARTMENTS)]}",
                    f"title: Title {i % 20}",
                    f"userAccountControl: {_UF_NORMAL_ACCOUNT | _UF_PASSWD_NOTREQD}",
                ]
            )
        )
    return "\n\n".join(entries) + "\n"


def load_users(dc: SambaDC, count: int) -> float:
    started = time.monotonic()
    dc.stop()  # write the database file with nobody else holding it
    sam = dc.target_dir / "private" / "sam.ldb"
    # One ldbadd is one transaction, and a huge one slows down more than linearly: load in batches.
    for start in range(0, count, LOAD_BATCH):
        ldif = users_ldif(start, min(start + LOAD_BATCH, count))
        subprocess.run(["ldbadd", "-H", str(sam)], input=ldif, text=True, check=True, capture_output=True)
    dc.start()
    return time.monotonic() - started


def window(emu: RunningEmulator, since: int) -> tuple[int, int, int, float]:
    """(requests, 429s, writes, seconds between the first and last request) since call number ``since``."""
    calls = list(emu.emulator.calls)[since:]
    if not calls:
        return 0, 0, 0, 0.0
    statuses = collections.Counter(c.status for c in calls)
    writes = sum(1 for c in calls if c.method in ("POST", "PATCH", "DELETE") and c.path.startswith("/v2/"))
    return len(calls), statuses[429], writes, calls[-1].at - calls[0].at


def run_sync(sync: MailboxSync, emu: RunningEmulator, label: str, incremental: bool = False) -> None:
    since = len(emu.emulator.calls)
    t0 = time.monotonic()
    plan = sync.plan(incremental=incremental)
    t_plan = time.monotonic() - t0
    report = sync.apply(plan)
    wall = time.monotonic() - t0
    requests, throttled, writes, span = window(emu, since)
    rate = (requests - 1) / span if span else 0.0  # n requests span n-1 intervals
    print(
        f"{label:<28} wall {wall:7.1f} s (plan {t_plan:5.1f} s) | requests {requests:6d} at {rate:5.1f}/s"
        f" | 429s {throttled:4d} | writes {writes:6d} | applied {report.applied} failed {len(report.failed)}"
        f" | counts {report.plan.counts()}"
    )


def _one_group_and_one_deletion(dc: SambaDC) -> None:
    """What an incremental run must notice without a full one: a new mail-enabled group with two members,
    and a deleted person (found in Deleted Objects)."""
    admin = AdAdmin(dc)
    group = admin.add_group(
        "Bench Announcements",
        members=[f"CN=bench00000,{OU}", f"CN=bench00001,{OU}"],
        container=OU,
        security=False,
    )
    admin.conn.modify(group, {"mail": [(MODIFY_REPLACE, ["announcements@example.com"])]})
    admin.conn.delete(f"CN=bench00002,{OU}")
    if admin.conn.result["result"] != 0:
        raise RuntimeError(f"deleting bench00002 failed: {admin.conn.result}")
    admin.conn.unbind()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--ip", default="127.0.0.51", help="loopback address for the benchmark's own DC")
    parser.add_argument("--limit", type=float, default=40.0, help="the emulator's requests/s per mail domain")
    defaults = AlimailSettings.model_fields
    parser.add_argument(
        "--client-rate",
        type=float,
        default=defaults["rate_per_second"].default,
        help="our pace, requests/s (default: the product's default)",
    )
    parser.add_argument(
        "--client-limit",
        type=int,
        default=defaults["api_limit_per_second"].default,
        help="the API limit our client holds to, arrivals per second (default: the product's default)",
    )
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    dc = None
    try:
        t0 = time.monotonic()
        dc = ensure_dc(workdir / "dc", args.ip)
        print(f"DC provisioned and started in {time.monotonic() - t0:.1f} s on {args.ip}")
        print(f"{args.users} users loaded with ldbadd in {load_users(dc, args.users):.1f} s (DC restart included)")
        ldap = LdapSettings(**dc.ldap_settings())
        with DirectoryListing(ldap) as listing:
            t0 = time.monotonic()
            listed = listing.people(Scope((OU,)))
            print(f"AD paged listing alone: {len(listed)} people in {time.monotonic() - t0:.2f} s")
        with run_emulator(rate_limit=args.limit) as emu:
            alimail = AlimailSettings(
                host=emu.url,
                client_id=emu.emulator.client_id,
                client_secret=emu.emulator.client_secret,
                mail_domain=emu.emulator.mail_domain,
                rate_per_second=args.client_rate,
                api_limit_per_second=args.client_limit,
                rate_limit_max_wait=600,
            )
            settings = ProvisioningSettings(
                provider="alimail", alimail=alimail, scope_base_dns=[OU], workers=args.workers
            )
            print(
                f"emulator limit {args.limit:g}/s; client pace {args.client_rate:g}/s, client limit"
                f" {args.client_limit}/s, {args.workers} workers"
            )
            db = Database(f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:6]}.db'}")
            with DirectoryListing(ldap) as listing, AlimailProvider(alimail) as provider:
                sync = MailboxSync(settings, listing, provider, db)
                run_sync(sync, emu, "first full sync")
                run_sync(sync, emu, "no-change full re-sync")
                run_sync(sync, emu, "no-change incremental", incremental=True)
                _one_group_and_one_deletion(dc)
                run_sync(sync, emu, "incremental: +1 group, -1 user", incremental=True)
            db.dispose()
    finally:
        if dc is not None:
            dc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
