"""Two IdP nodes behind one name, as a company runs them for availability: sessions in a real Redis, state in a
real PostgreSQL, the same keys and metadata. A person who signed in on one node is known on the other."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
import sqlalchemy

from idp.demo.samba_dc import DEMO_USERS
from idp.store.models import Base
from tests.e2e.browser import Browser
from tests.e2e.harness import IdpServer, base_config, free_port, prepare_idp, serve_idp
from tests.e2e.saml_sp import IndependentSp, write_metadata
from tests.support import POSTGRES_URL, REDIS_URL, require_postgres, require_redis

pytestmark = pytest.mark.ad
ALICE = next(u for u in DEMO_USERS if u.username == "alice")


@dataclass
class Cluster:
    nodes: list[IdpServer]
    sp: IndependentSp

    def on(self, node: int, url: str) -> str:
        """The same URL, sent to one node (as a load balancer would)."""
        return url.replace(self.nodes[0].base_url, self.nodes[node].base_url, 1)


@pytest.fixture(scope="module")
def cluster(samba_dc, tmp_path_factory) -> Iterator[Cluster]:
    require_postgres()
    require_redis()
    engine = sqlalchemy.create_engine(POSTGRES_URL)
    Base.metadata.drop_all(engine)  # a clean database for this run, migrated afresh by the first node
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    redis.Redis.from_url(REDIS_URL).flushdb()

    root = tmp_path_factory.mktemp("cluster")
    ports = [free_port(), free_port()]
    # Both nodes are published under one name (node 0's URL); the test reaches each by its own port.
    config = base_config(root, f"http://127.0.0.1:{ports[0]}", samba_dc.ldap_settings())
    config["server"].update(session_backend="redis", redis_url=REDIS_URL)
    config["database"] = {"url": POSTGRES_URL}
    path = prepare_idp(root, config)
    nodes: list[IdpServer] = []
    try:
        for port in ports:
            nodes.append(serve_idp(path, port, workers=1))
        sp = IndependentSp("https://cluster.sp.test/saml", "http://127.0.0.1:9100/acs", False, nodes[0].metadata())
        nodes[0].idp("sp", "add", str(write_metadata(sp, root)))
        yield Cluster(nodes, sp)
    finally:
        for node in nodes:
            node.stop()


def test_signed_in_on_one_node_known_on_the_other(cluster):
    browser = Browser()
    login = browser.get(cluster.sp.redirect_login_url())
    assert login.url.startswith(cluster.nodes[0].base_url) and login.is_login
    first = cluster.sp.consume(*browser.saml_post(browser.login(login, "alice", ALICE.password)))
    page = browser.get(cluster.on(1, cluster.sp.redirect_login_url()))
    assert not page.is_login, "node 2 did not see the session node 1 stored in Redis"
    second = cluster.sp.consume(*browser.saml_post(page))
    assert second.nameid == first.nameid == ALICE.mail
    assert second.session_index == first.session_index


def test_both_nodes_write_one_audit_trail_in_postgresql(cluster):
    browser = Browser()
    for node in (0, 1):
        page = browser.get(cluster.on(node, cluster.sp.redirect_login_url()))
        if page.is_login:
            page = browser.login(page, "alice", ALICE.password)
        cluster.sp.consume(*browser.saml_post(page))
    engine = sqlalchemy.create_engine(POSTGRES_URL)
    with engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.text("SELECT reason FROM audit_events WHERE username = 'alice' AND sp_entity_id = :sp"),
            {"sp": cluster.sp.entity_id},
        ).all()
    engine.dispose()
    assert len(rows) >= 2 and {"password", "sso_session"} <= {r[0] for r in rows}


def test_a_post_binding_request_parked_on_one_node_resumes_on_the_other(cluster):
    browser = Browser()
    fields = cluster.sp.post_login_fields()
    r = browser.http.post(cluster.nodes[0].base_url + "/saml/sso", data=fields, follow_redirects=False, timeout=30)
    assert r.status_code == 303
    page = browser.get(
        cluster.on(1, r.headers["Location"])
        if r.headers["Location"].startswith("http")
        else cluster.nodes[1].base_url + r.headers["Location"]
    )
    assert page.is_login
    result = cluster.sp.consume(*browser.saml_post(browser.login(page, "alice", ALICE.password)))
    assert result.nameid == ALICE.mail


def test_both_nodes_publish_the_same_identity(cluster):
    from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser as Parser

    first, second = (Parser.parse(node.metadata())["idp"] for node in cluster.nodes)
    assert first["entityId"] == second["entityId"]
    assert first["x509cert"] == second["x509cert"]  # one signing key, not one per node
    assert first["singleSignOnService"] == second["singleSignOnService"]
