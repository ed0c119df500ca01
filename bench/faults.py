"""Faults injected under load: two IdP nodes behind the shipped nginx site, sharing a Redis and a PostgreSQL.

    .venv/bin/python -m bench.faults                       # every fault, about 5 minutes; root and Samba needed
    .venv/bin/python -m bench.faults --only node_kill,redis_restart --seconds 20

For each fault, the load (bench.load, paced: half the clients sign in with a password and an empty cookie jar,
half reuse an SSO session) runs through nginx; the fault starts ``--lead`` seconds into it and is removed
``hold`` seconds later. Every call is recorded (bench.fault_load) and the report says, per fault:

- calls made, failed, and how they failed (our "try again" page, another page of ours, nginx's page, nginx's
  bare page, no answer at all);
- SSO sessions lost (a signed-in client sent back to the login page);
- time to recover: from the moment the fault was removed to the end of the last failed call (0 when every
  failure ended while the fault lasted), and how many calls succeeded after it;
- audit rows missing: successful calls whose request id has no audit row; sessions without a row: failed
  password sign-ins whose browser is nevertheless signed in and whose request id has no audit row; audit rows
  and outbox items (5 queued at the start) stored before the fault and gone after it;
- for the node kill, how long the restarted node accepted connections before it answered; for slow AD, the
  slowest /healthz answer of any node while AD was slow.

Prints a table, writes bench/results/faults.json (not committed); exits 1 when an invariant broke (an audit row
missing, a session without its row, nginx's bare page, a lost SSO session, a 500).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.environment import DC_ADDRESSES
from bench.fault_load import FaultClient, Record, read_records, signed_in
from bench.flows import AuthnRequests
from bench.load import LoadError, run_step
from idp.demo.samba_dc import AddressInUse, SambaDC, ensure_dc
from tests.e2e.fault_cluster import (
    Cluster,
    audit_reasons,
    audit_request_ids,
    build_cluster,
    seed_outbox,
    sqlite_write_lock,
    stored_rows,
)
from tests.e2e.saml_sp import IndependentSp, write_metadata

RESULTS = Path(__file__).parent / "results" / "faults.json"
SP_ENTITY_ID = "https://faults.sp.test/saml"
FINE = ("ok", "session_lost")
"""Outcomes that are not failed calls (a lost session is counted on its own)."""
BROKEN = ("nginx_bare", "idp_internal")
PAGES = ("idp_", "nginx_page")
"""Outcomes that are a page a person reads: each must show the request id."""
"""Outcomes that must never happen."""
AD_DELAY = 2.0
"""Seconds each reply of AD is held back in the slow-AD fault (the cluster's LDAP receive timeout is 5 s)."""
MID_SIGNIN_AD_DELAY = 0.5
"""Seconds each AD reply is held back while a node is killed with sign-ins in flight."""
OUTBOX_ITEMS = 5
"""Mailbox creations queued before the faults (no provider is configured: they stay queued); each must remain."""
AD_STALL = 7.0
"""Seconds each AD reply is held back in the too-slow fault: longer than the receive timeout."""
CLUSTER_LDAP = {"receive_timeout": 5.0, "connect_timeout": 2.0}

console = Console(width=max(150, Console().width))


@dataclass
class Fault:
    name: str
    what: str
    inject: Callable[[Cluster], None]
    recover: Callable[[Cluster], None]
    hold: float
    sqlite: bool = False
    """Run on one node with SQLite instead of two nodes with PostgreSQL."""


def _restart_node(cluster: Cluster) -> None:
    node = cluster.nodes[1]
    node.start(wait=False)
    node.wait_ready()


def _kill_mid_signin(cluster: Cluster) -> None:
    # AD answers slowly, so that password sign-ins are in flight on the node when it dies.
    cluster.slow_ad(MID_SIGNIN_AD_DELAY)
    time.sleep(2 * MID_SIGNIN_AD_DELAY)
    cluster.nodes[1].kill()


def _restore_after_kill(cluster: Cluster) -> None:
    cluster.slow_ad(0.0)
    _restart_node(cluster)


def _lock_sqlite(seconds: float) -> Callable[[Cluster], None]:
    def inject(cluster: Cluster) -> None:
        threading.Thread(target=_hold_lock, args=(cluster.database_url, seconds), daemon=True).start()

    return inject


def _hold_lock(url: str, seconds: float) -> None:
    with sqlite_write_lock(url, seconds):
        pass


FAULTS = [
    Fault("node_kill", "node 2 SIGKILLed (master and workers), started again 6 s later",
          lambda c: c.nodes[1].kill(), _restart_node, 6.0),
    Fault("node_kill_mid_signin", f"AD replies held back {MID_SIGNIN_AD_DELAY:g} s, then node 2 SIGKILLed with "
          "sign-ins in flight; started again 6 s later", _kill_mid_signin, _restore_after_kill, 6.0),
    Fault("dc_down", "the preferred of two DCs stops (connections cut, new ones refused) for 8 s",
          lambda c: c.dcs[0].stop(), lambda c: c.dcs[0].start(), 8.0),
    Fault("postgres_restart", "PostgreSQL stopped (fast shutdown), started 5 s later",
          lambda c: c.postgres.stop(), lambda c: c.postgres.start(), 5.0),
    Fault("redis_restart", "Redis stopped (SIGTERM, append-only file kept), started 5 s later",
          lambda c: c.redis.stop(), lambda c: c.redis.start(), 5.0),
    Fault("ad_slow", f"every AD reply held back {AD_DELAY:g} s for 8 s (LDAP receive timeout 5 s)",
          lambda c: c.slow_ad(AD_DELAY), lambda c: c.slow_ad(0.0), 8.0),
    Fault("ad_too_slow", f"every AD reply held back {AD_STALL:g} s for 8 s: beyond the LDAP receive timeout",
          lambda c: c.slow_ad(AD_STALL), lambda c: c.slow_ad(0.0), 8.0),
    Fault("sqlite_locked", "one node on SQLite; another process holds its write lock for 10 s",
          _lock_sqlite(10.0), lambda c: None, 10.0, sqlite=True),
]  # fmt: skip


@dataclass
class Timeline:
    injected: float = 0.0
    recovered: float = 0.0
    healthz: list[tuple[float, float, int]] = field(default_factory=list)
    """(when, seconds, status) of /healthz asked of every node directly while the load ran; status 0: no answer."""


def run_fault(cluster: Cluster, sp: IndependentSp, fault: Fault, *, seconds: float, rate: float, clients: int,
              lead: float) -> dict[str, Any]:  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix=f"records-{fault.name}-", dir=cluster.root))
    requests_ = AuthnRequests(sp)
    timeline = Timeline()
    stop = threading.Event()

    def drive() -> None:
        while not any(p.stat().st_size for p in folder.glob("*.jsonl")):  # the load has started
            if stop.wait(0.05):
                return
        time.sleep(lead)
        timeline.injected = time.monotonic()
        fault.inject(cluster)
        time.sleep(fault.hold)
        fault.recover(cluster)
        timeline.recovered = time.monotonic()

    def watch_healthz() -> None:
        while not stop.wait(0.5):
            for node in cluster.nodes:
                began = time.monotonic()
                try:
                    status = httpx.get(node.url + "/healthz", timeout=5).status_code
                except httpx.HTTPError:
                    status = 0
                timeline.healthz.append((began, time.monotonic() - began, status))

    before = stored_rows(cluster.database_url)
    threads = [threading.Thread(target=drive, daemon=True), threading.Thread(target=watch_healthz, daemon=True)]
    for t in threads:
        t.start()
    try:
        run_step(
            fault.name,
            lambda i: FaultClient(requests_, "sso" if i % 2 else "password", i, folder),
            clients,
            seconds=seconds,
            max_ops_per_client=10_000,
            rate_per_second=rate,
        )
    except LoadError as exc:
        stop.set()  # the load never started: the fault is not injected
        errors = folder / "setup-errors.txt"
        raise LoadError(f"{exc}\n{errors.read_text() if errors.exists() else ''}") from exc
    finally:
        threads[0].join(timeout=fault.hold + 120)  # a fault injected is always removed before the report
        stop.set()
        threads[1].join(timeout=10)
    records = read_records(folder)
    after = stored_rows(cluster.database_url, audit_up_to=before.audit_max_id)
    lost = {"stored_audit_rows_lost": before.audit_rows - after.audit_rows,
            "outbox_items_lost": before.outbox_items - after.outbox_items}  # fmt: skip
    return {**summarize(cluster, fault, records, timeline), **lost}


def summarize(cluster: Cluster, fault: Fault, records: list[Record], timeline: Timeline) -> dict[str, Any]:
    audited = audit_request_ids(cluster.database_url)
    failed = [r for r in records if r.outcome not in FINE]
    reasons = audit_reasons(
        cluster.database_url, [r.request_id for r in failed if r.outcome == "login_refused" and r.request_id]
    )
    for r in failed:
        if r.outcome == "login_refused":
            r.outcome = f"login_refused({reasons.get(r.request_id or '', 'no audit row')})"
    succeeded = [r for r in records if r.status == 200 and r.outcome in FINE]
    after = [r.at + r.took - timeline.recovered for r in failed]
    unsigned = [
        r for r in failed
        if r.flow == "password" and r.session_cookie and signed_in(cluster.base_url, r.session_cookie)
        and r.request_id not in audited
    ]  # fmt: skip
    in_fault = [h for h in timeline.healthz if timeline.injected <= h[0] <= timeline.recovered]
    window = [r for r in records if timeline.injected <= r.at <= timeline.recovered]
    during = [r for r in succeeded if timeline.injected <= r.at <= timeline.recovered]
    password_ok = [r.took for r in during if r.flow == "password"]
    restarted = cluster.nodes[1] if fault.name.startswith("node_kill") else None
    return {
        "fault": fault.name,
        "what": fault.what,
        "calls": len(records),
        "failed": len(failed),
        "failed_by": dict(Counter(r.outcome for r in failed)),
        "error_pages_show_request_id": all(r.shows_request_id for r in failed if r.outcome.startswith(PAGES)),
        "sessions_lost": len({r.client for r in records if r.outcome == "session_lost"}),
        "first_failure_after_fault_s": round(min((r.at - timeline.injected for r in failed), default=0.0), 2),
        "recovered_after_s": round(max([0.0, *after]), 2),
        "ok_after_last_failure": sum(1 for r in succeeded if r.at >= max((f.at + f.took for f in failed), default=0)),
        "audit_rows_missing": sum(1 for r in succeeded if r.request_id not in audited),
        "sessions_without_row": len(unsigned),
        "calls_during_fault": len(window),
        "slowest_call_during_fault_s": round(max((r.took for r in window), default=0.0), 2),
        "slowest_failed_call_s": round(max((r.took for r in failed), default=0.0), 2),
        "password_signin_during_fault_p50_s": round(statistics.median(password_ok), 2) if password_ok else None,
        "healthz_during_fault_max_s": round(max((h[1] for h in in_fault), default=0.0), 2),
        "healthz_during_fault_failed": sum(1 for h in in_fault if h[2] != 200 and not (restarted and h[2] == 0)),
        "restarted_node_listening_s": round(restarted.listening_after or 0, 2) if restarted else None,
        "restarted_node_answering_s": round(restarted.answering_after or 0, 2) if restarted else None,
    }


def problems_of(result: dict[str, Any]) -> list[str]:
    found = []
    if result["audit_rows_missing"]:
        found.append(f"{result['audit_rows_missing']} successful call(s) without an audit row")
    if result["sessions_without_row"]:
        found.append(f"{result['sessions_without_row']} session(s) without their audit row")
    for kind in ("stored_audit_rows_lost", "outbox_items_lost"):
        if result[kind]:
            found.append(f"{result[kind]} {kind.replace('_', ' ')}")
    if result["sessions_lost"]:
        found.append(f"{result['sessions_lost']} SSO session(s) lost")
    for outcome in BROKEN:
        if result["failed_by"].get(outcome):
            found.append(f"{result['failed_by'][outcome]} x {outcome}")
    if not result["error_pages_show_request_id"]:
        found.append("an error page without its request id")
    return found


def start_dc(root: Path) -> SambaDC:
    # From the top of the benchmark's range: bench_sso takes the first free address from the bottom.
    for ip in reversed(DC_ADDRESSES):
        try:
            return ensure_dc(root / f"samba-{ip}", ip)
        except AddressInUse:
            continue
    raise RuntimeError(f"every benchmark DC address ({DC_ADDRESSES[0]}..{DC_ADDRESSES[-1]}) is in use")


def register_sp(cluster: Cluster) -> IndependentSp:
    metadata = httpx.get(cluster.nodes[0].url + "/saml/metadata", timeout=30).text
    sp = IndependentSp(SP_ENTITY_ID, "http://127.0.0.1:9/faults/acs", True, metadata)
    folder = cluster.root / "sp"
    folder.mkdir(exist_ok=True)
    cluster.idp("sp", "add", str(write_metadata(sp, folder)))
    seed_outbox(cluster.database_url, OUTBOX_ITEMS)
    return sp


def trust_cluster_tls(cluster: Cluster, bundle: Path) -> None:
    """Clients (httpx, in this process and the load's forks) trust the cluster's nginx certificate: it joins
    the bundle SSL_CERT_FILE names, which outlives each cluster."""
    with bundle.open("a") as f:
        f.write(cluster.nginx.cert.read_text())
    os.environ["SSL_CERT_FILE"] = str(bundle)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=24.0, help="length of the load around each fault")
    parser.add_argument("--lead", type=float, default=5.0, help="seconds of load before the fault")
    parser.add_argument("--rate", type=float, default=8.0, help="calls per second over all clients (paced)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients, half password, half SSO")
    parser.add_argument("--only", default="", help="comma-separated fault names: " + ", ".join(f.name for f in FAULTS))
    args = parser.parse_args(argv)
    # A stopped run (timeout, kill) still stops its DC, PostgreSQL, Redis, nginx and nodes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    chosen = [f for f in FAULTS if not args.only or f.name in args.only.split(",")]
    results: list[dict[str, Any]] = []
    root = Path(tempfile.mkdtemp(prefix="idp-faults-dc-"))
    dc = start_dc(root)
    console.print(f"[dim]Samba AD DC on {dc.ip}[/dim]")
    try:
        for sqlite in (False, True):
            faults = [f for f in chosen if f.sqlite == sqlite]
            if not faults:
                continue
            cluster = build_cluster(dc, nodes=1 if sqlite else 2, sqlite=sqlite, ldap=CLUSTER_LDAP)
            try:
                trust_cluster_tls(cluster, root / "trusted.pem")
                sp = register_sp(cluster)
                shape = "1 node, SQLite" if sqlite else "2 nodes, PostgreSQL + Redis"
                console.print(f"[dim]{shape} behind nginx at {cluster.base_url} ({cluster.root})[/dim]")
                for fault in faults:
                    result = run_fault(cluster, sp, fault, seconds=args.seconds, rate=args.rate,
                                       clients=args.clients, lead=args.lead)  # fmt: skip
                    result["problems"] = problems_of(result)
                    results.append(result)
                    console.print(f"[dim]{fault.name}: {json.dumps(result, ensure_ascii=False)}[/dim]")
            finally:
                cluster.close()
    finally:
        dc.stop()
        shutil.rmtree(root, ignore_errors=True)
    _print(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "faults": results}, indent=2, ensure_ascii=False) + "\n")
    console.print(f"[dim]figures written to {RESULTS}[/dim]")
    return 1 if any(r["problems"] for r in results) else 0


def _print(results: list[dict[str, Any]]) -> None:
    table = Table(title="Faults under load (through nginx)")
    for column in ("fault", "calls", "failed", "how", "sessions lost", "recovered after", "audit rows missing",
                   "sessions w/o row", "notes"):  # fmt: skip
        table.add_column(column)
    for r in results:
        how = ", ".join(f"{k} {v}" for k, v in sorted(r["failed_by"].items())) or "-"
        notes = []
        if r["restarted_node_listening_s"] is not None:
            gap = r["restarted_node_answering_s"] - r["restarted_node_listening_s"]
            notes.append(f"restarted node answered {gap:.2f} s after it listened")
        if r["password_signin_during_fault_p50_s"] is not None:
            notes.append(f"password sign-in p50 {r['password_signin_during_fault_p50_s']} s during the fault")
        notes.append(f"/healthz max {r['healthz_during_fault_max_s']} s")
        if r["problems"]:
            notes.append("PROBLEMS: " + "; ".join(r["problems"]))
        table.add_row(r["fault"], str(r["calls"]), str(r["failed"]), how, str(r["sessions_lost"]),
                      f"{r['recovered_after_s']} s", str(r["audit_rows_missing"]), str(r["sessions_without_row"]),
                      "; ".join(notes))  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
