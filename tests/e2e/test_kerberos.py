"""Windows desktop sign-in (SPNEGO): the suite's Samba AD DC is also the KDC. The service account, its SPN, its
AES-only encryption types and the keytab are made exactly as the README tells an admin (samba-tool, ldbmodify);
the person gets a ticket with kinit, and a client that speaks Negotiate (gssapi, as a browser does) is signed
in to an independent SP without the password form. Everything else falls back to the form, never to an error
page: a PC whose clock is off included.

The IdP's public name is made up (sso.corp.example.com, as the SPN needs a name): the clients connect to
127.0.0.1 and send that name as Host. Client addresses come through one trusted proxy (X-Forwarded-For), so
one IdP sees clients inside and outside the networks offered Negotiate."""

from __future__ import annotations

import base64
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Generator, Iterator
from pathlib import Path

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client

from idp.directory.keytab import read_keytab
from idp.sps.policy import SpPolicy
from tests.e2e.ad_admin import AdAdmin
from tests.e2e.browser import Browser, Page
from tests.e2e.harness import IdpServer, base_config, free_port, prepare_idp, serve_idp
from tests.e2e.saml_sp import IndependentSp, register_sp
from tests.e2e.test_oidc import REDIRECT, authorize
from tests.support import require

pytestmark = pytest.mark.ad

HOST = "sso.corp.example.com"
REALM = "CORP.EXAMPLE.COM"
SPN = f"HTTP/{HOST}"
PASSWORD = "Passw0rd!Kerberos1"
INSIDE = "10.20.1.5"
OUTSIDE = "192.0.2.7"
KERBEROS_CLASS = "urn:oasis:names:tc:SAML:2.0:ac:classes:Kerberos"
PASSWORD_CLASS = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
SPNEGO = "1.3.6.1.5.5.2"


@pytest.fixture(scope="module")
def ad(samba_dc) -> Iterator[AdAdmin]:
    with AdAdmin(samba_dc) as admin:
        yield admin


def _samba_tool(samba_dc, *args: str) -> str:
    conf = samba_dc.target_dir / "etc" / "smb.conf"
    done = subprocess.run(
        ["samba-tool", *args, "-s", str(conf)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"samba-tool {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


AES = {"aes128-cts-hmac-sha1-96": 17, "aes256-cts-hmac-sha1-96": 18}
"""The enctypes AD encrypts tickets with when the account allows AES, by MIT's name and RFC 3961 number."""


def _krb5_conf(samba_dc, path: Path, libdefaults: str = "", *, default_realm: bool = True) -> Path:
    """A krb5.conf naming the run's DC as the realm's KDC; ``libdefaults``: more lines for that section;
    ``default_realm``: whether that section names the realm too."""
    path.write_text(
        "[libdefaults]\n"
        + (f"  default_realm = {REALM}\n" if default_realm else "")
        + "  dns_lookup_kdc = false\n  dns_lookup_realm = false\n"
        "  rdns = false\n  dns_canonicalize_hostname = false\n"
        + libdefaults
        + f"[realms]\n  {REALM} = {{\n    kdc = {samba_dc.ip}\n  }}\n"
        f"[domain_realm]\n  .corp.example.com = {REALM}\n  corp.example.com = {REALM}\n"
    )
    return path


@pytest.fixture(scope="module")
def kerberos(samba_dc, ad: AdAdmin, tmp_path_factory: pytest.TempPathFactory) -> Generator[Path, None, None]:
    """The keytab for HTTP/sso.corp.example.com (the README's commands for a Samba DC: the SPN, AES only on the
    account, the export), and a krb5.conf naming the DC as KDC for this process and the IdP's."""
    require(shutil.which("kinit") is not None, "kinit not installed (Debian: krb5-user)")
    root = tmp_path_factory.mktemp("kerberos")
    account = ad.add_user("kb-svc-sso", PASSWORD + "svc")
    _samba_tool(samba_dc, "spn", "add", SPN, "kb-svc-sso")
    # Without msDS-SupportedEncryptionTypes the DC encrypts the account's tickets with RC4 and exports only its
    # RC4 key: 24 (AES128 | AES256) makes both AES, and the keytab holds no RC4 key at all.
    _ldbmodify(
        samba_dc,
        f"dn: {account}\nchangetype: modify\n"
        "replace: msDS-SupportedEncryptionTypes\nmsDS-SupportedEncryptionTypes: 24\n",
    )
    keytab = root / "idp.keytab"
    _samba_tool(samba_dc, "domain", "exportkeytab", str(keytab), f"--principal={SPN}")
    conf = _krb5_conf(samba_dc, root / "krb5.conf")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KRB5_CONFIG", str(conf))
        yield keytab


def _ldbmodify(samba_dc, ldif: str) -> None:
    sam = samba_dc.target_dir / "private" / "sam.ldb"
    done = subprocess.run(
        ["ldbmodify", "-H", str(sam)], input=ldif, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"ldbmodify: {done.stdout}{done.stderr}"


def _serve(samba_dc, keytab: Path, root: Path) -> IdpServer:
    """An IdP with Windows sign-in for 10.20.0.0/16, behind one trusted proxy, and one SP; it reads the
    krb5.conf KRB5_CONFIG names now."""
    port = free_port()
    config = base_config(root, f"http://{HOST}:{port}", samba_dc.ldap_settings())
    config["server"]["trusted_proxy_count"] = 1
    # service_principal left to its default: HTTP/ and the host of base_url.
    config["kerberos"] = {"keytab": keytab, "networks": ["10.20.0.0/16"]}
    server = serve_idp(prepare_idp(root, config), port, workers=1)
    try:
        server.sps["open"] = register_sp(server, "kerberos", SpPolicy())
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def server(samba_dc, kerberos: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdpServer]:
    server = _serve(samba_dc, kerberos, tmp_path_factory.mktemp("kerberos-idp"))
    try:
        yield server
    finally:
        server.stop()


class _ToLoopback(httpx.HTTPTransport):
    """Connects to 127.0.0.1 for the made-up host name, keeping the name in the URL and the Host header."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != HOST:
            return super().handle_request(request)
        # A copy: the client files the cookies under the URL of the request it sent, which keeps the name.
        sent = httpx.Request(
            request.method,
            request.url.copy_with(host="127.0.0.1"),
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return super().handle_request(sent)


class Negotiate(httpx.Auth):
    """What a browser does on `401 WWW-Authenticate: Negotiate`: one SPNEGO token from the person's ticket."""

    def __init__(self, ccache: Path) -> None:
        self.ccache = ccache
        self.offers = 0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        response = yield request
        if response.status_code != 401 or response.headers.get("WWW-Authenticate") != "Negotiate":
            return
        self.offers += 1
        retry = response.request
        retry.headers["Authorization"] = "Negotiate " + base64.b64encode(_token(self.ccache)).decode()
        yield retry


def _token(ccache: Path) -> bytes:
    """A SPNEGO token for the IdP's service, from the ticket in ``ccache`` (its service ticket is kept there)."""
    import gssapi

    creds = gssapi.Credentials(usage="initiate", store={"ccache": str(ccache)})
    target = gssapi.Name(f"HTTP@{HOST}", gssapi.NameType.hostbased_service)
    mech = gssapi.OID.from_int_seq(SPNEGO)
    return gssapi.SecurityContext(name=target, creds=creds, usage="initiate", mech=mech).step()


def _browser(client_ip: str, auth: httpx.Auth | None = None) -> Browser:
    browser = Browser()
    browser.http = httpx.Client(
        follow_redirects=True,
        transport=_ToLoopback(),
        auth=auth,
        headers={"Accept-Language": "en", "X-Forwarded-For": client_ip},
    )
    return browser


def _ticket(username: str, root: Path) -> Path:
    """kinit with the password on stdin, into a credential cache of the person's own."""
    ccache = root / f"{username}.ccache"
    done = subprocess.run(
        ["kinit", f"{username}@{REALM}"],
        input=PASSWORD + "\n",
        env={**os.environ, "KRB5CCNAME": f"FILE:{ccache}"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, f"kinit: {done.stdout}{done.stderr}"
    return ccache


def _class_ref(response_xml: str) -> str:
    start = response_xml.index("AuthnContextClassRef>") + len("AuthnContextClassRef>")
    return response_xml[start : response_xml.index("<", start)]


def _login_page(browser: Browser, sp: IndependentSp) -> tuple[httpx.Response, Page]:
    r = browser.http.get(sp.redirect_login_url(), timeout=30)
    return r, Page(str(r.url), r.status_code, r.text)


def test_a_windows_ticket_signs_in_without_the_password_form(server: IdpServer, ad: AdAdmin, tmp_path: Path):
    ad.add_user("kb.alice", PASSWORD, mail="kb.alice@corp.example.com")
    negotiate = Negotiate(_ticket("kb.alice", tmp_path))
    browser, sp = _browser(INSIDE, negotiate), server.sps["open"]
    r, page = _login_page(browser, sp)
    assert r.status_code == 200 and page.is_auto_post, f"{r.status_code} {r.url}\n{r.text[:800]}"
    assert negotiate.offers == 1
    result = sp.consume(*browser.saml_post(page))
    assert result.nameid == "kb.alice@corp.example.com"
    assert _class_ref(result.response_xml) == KERBEROS_CLASS
    [row] = server.audit_rows(event="signin", username="kb.alice", result="success")
    assert (row["reason"], row["sp_entity_id"], row["client_ip"]) == ("kerberos", sp.entity_id, INSIDE)
    # The SSO session it started is reused without another ticket, and still says Kerberos.
    again = _login_page(browser, sp)[1]
    assert negotiate.offers == 1 and _class_ref(sp.consume(*browser.saml_post(again)).response_xml) == KERBEROS_CLASS


def test_a_windows_ticket_signs_in_to_an_oidc_client_with_the_one_kerberos_row_an_sp_gets(
    server: IdpServer, ad: AdAdmin, tmp_path: Path
):
    ad.add_user("kb.oidc", PASSWORD, mail="kb.oidc@corp.example.com")
    negotiate = Negotiate(_ticket("kb.oidc", tmp_path))
    saml, sp = _browser(INSIDE, negotiate), server.sps["open"]
    assert sp.consume(*saml.saml_post(_login_page(saml, sp)[1])).nameid == "kb.oidc@corp.example.com"

    added = server.idp("oidc", "client", "add", "kb-app", "--name", "KB App", "--redirect-uri", REDIRECT)
    secret = re.search(r"client secret: (\S+)", added.stdout)
    assert secret, added.stdout
    browser = _browser(INSIDE, negotiate)
    # As behind the TLS proxy of a real deployment: OAuth 2 is refused over plain http to a name.
    browser.http.headers["X-Forwarded-Proto"] = "https"
    config = browser.http.get(f"http://{HOST}:{server.base_url.rsplit(':', 1)[1]}/.well-known/openid-configuration")
    endpoints = config.json()
    client = OAuth2Client("kb-app", secret[1], scope="openid", redirect_uri=REDIRECT, code_challenge_method="S256")
    verifier = generate_token(48)
    url, _ = client.create_authorization_url(
        endpoints["authorization_endpoint"], code_verifier=verifier, nonce=generate_token(16)
    )
    callback = authorize(browser, url)  # the login page takes the ticket: no form, no password
    assert isinstance(callback, str), callback
    assert negotiate.offers == 2
    # The client's own requests go to the IdP's address (no made-up name, no proxy on the way).
    token = client.fetch_token(server.base_url + "/oidc/token", authorization_response=callback, code_verifier=verifier)
    assert token["id_token"]

    saml_row, oidc_row = reversed(server.audit_rows(event="signin", username="kb.oidc"))
    assert (saml_row["result"], saml_row["reason"], saml_row["sp_entity_id"]) == ("success", "kerberos", sp.entity_id)
    assert oidc_row["sp_entity_id"] == "urn:ad-sso-bridge:oidc:kb-app"
    same = ("result", "reason", "detail", "client_ip")
    assert [oidc_row[k] for k in same] == [saml_row[k] for k in same]


def test_without_a_ticket_the_form_comes_with_the_offer_and_the_password_works(server: IdpServer, ad: AdAdmin):
    ad.add_user("kb.bob", PASSWORD, mail="kb.bob@corp.example.com")
    browser, sp = _browser(INSIDE), server.sps["open"]
    r, page = _login_page(browser, sp)
    assert (r.status_code, r.headers.get("WWW-Authenticate")) == (401, "Negotiate")
    assert page.is_login and page.text_of("error") is None
    result = sp.consume(*browser.saml_post(browser.login(page, "kb.bob", PASSWORD)))
    assert result.nameid == "kb.bob@corp.example.com" and _class_ref(result.response_xml) == PASSWORD_CLASS


def test_outside_the_networks_negotiate_is_never_offered_nor_taken(server: IdpServer, tmp_path: Path):
    negotiate = Negotiate(tmp_path / "never-used.ccache")
    browser, sp = _browser(OUTSIDE, negotiate), server.sps["open"]
    r, page = _login_page(browser, sp)
    assert r.status_code == 200 and "WWW-Authenticate" not in r.headers and page.is_login
    assert negotiate.offers == 0
    # A token sent unasked from outside is not even read: the plain form again.
    forced = browser.http.get(r.url, headers={"Authorization": "Negotiate " + base64.b64encode(b"x").decode()})
    assert forced.status_code == 200 and Page(str(forced.url), 200, forced.text).is_login


def test_a_bad_token_falls_back_to_the_form_with_an_audit_row(server: IdpServer):
    browser, sp = _browser(INSIDE), server.sps["open"]
    r, _ = _login_page(browser, sp)
    garbage = base64.b64encode(b"\x60\x08not a ticket").decode()
    answer = browser.http.get(r.url, headers={"Authorization": f"Negotiate {garbage}"})
    page = Page(str(answer.url), answer.status_code, answer.text)
    assert answer.status_code == 401 and "WWW-Authenticate" not in answer.headers and page.is_login
    assert page.text_of("error") == (
        "Signing you in with your Windows logon did not work. Please sign in with your password."
    )
    rows = server.audit_rows(event="signin", result="failure", reason="kerberos_rejected")
    assert rows and rows[0]["client_ip"] == INSIDE and rows[0]["detail"]


def test_a_disabled_persons_ticket_is_refused_with_the_account_state_words(
    server: IdpServer, ad: AdAdmin, tmp_path: Path
):
    dn = ad.add_user("kb.dis", PASSWORD, mail="kb.dis@corp.example.com")
    ccache = _ticket("kb.dis", tmp_path)
    _token(ccache)  # the service ticket, got before the admin disabled them (the KDC refuses one after)
    ad.disable(dn)
    negotiate = Negotiate(ccache)
    browser, sp = _browser(INSIDE, negotiate), server.sps["open"]
    r, page = _login_page(browser, sp)
    assert negotiate.offers == 1
    assert r.status_code == 401 and page.is_login
    assert page.text_of("error") == "Your account is disabled. Please contact the help desk."
    [row] = server.audit_rows(event="signin", username="kb.dis", result="failure")
    assert row["reason"] == "account_disabled"


def test_the_console_shows_the_keytab_against_ad(server: IdpServer):
    base = f"http://{HOST}:{server.base_url.rsplit(':', 1)[1]}"
    browser = _browser(OUTSIDE)
    signed_in = browser.login(browser.get(base + "/admin/"), "anna", "Passw0rd!Anna")
    assert signed_in.status == 200, signed_in.html[:500]
    page = browser.get(base + "/admin/directory")
    assert page.text_of("kerberos-principal") == f"{SPN}@{REALM}"
    assert page.text_of("kerberos-keytab").endswith("found")
    assert page.text_of("kerberos-account").startswith("CN=kb-svc-sso,")
    assert page.doc().get_element_by_id("kerberos-kvno").get("data-matches") == "yes"
    skew = page.text_of("kerberos-skew").split()[0]
    assert abs(int(skew)) <= 5, page.text_of("kerberos-skew")


@pytest.mark.parametrize("krb5_conf", ["without default_realm", "none at all"])
def test_an_idp_whose_krb5_conf_names_no_realm_accepts_tickets(
    samba_dc,
    kerberos: Path,
    ad: AdAdmin,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    krb5_conf: str,
):
    """The principal the IdP accepts for carries the realm of [ldap], so the IdP's krb5.conf need not name a
    default realm, nor exist (this process's krb5.conf, for kinit and the client, still names the KDC)."""
    root = tmp_path_factory.mktemp("kerberos-realmless-idp")
    if krb5_conf == "none at all":
        conf = root / "absent" / "krb5.conf"
    else:
        conf = _krb5_conf(samba_dc, root / "krb5.conf", default_realm=False)
        assert "default_realm" not in conf.read_text() and REALM in conf.read_text()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KRB5_CONFIG", str(conf))
        server = _serve(samba_dc, kerberos, root)
    try:
        username = "kb.realm" + ("0" if krb5_conf == "none at all" else "1")
        ad.add_user(username, PASSWORD, mail=f"{username}@corp.example.com")
        browser, sp = _browser(INSIDE, Negotiate(_ticket(username, tmp_path))), server.sps["open"]
        r, page = _login_page(browser, sp)
        assert r.status_code == 200 and page.is_auto_post, f"{r.status_code}\n{r.text[:800]}"
        assert sp.consume(*browser.saml_post(page)).nameid == f"{username}@corp.example.com"
        [row] = server.audit_rows(event="signin", username=username)
        assert (row["result"], row["reason"]) == ("success", "kerberos")
    finally:
        server.stop()


def _service_ticket_enctypes(ccache: Path) -> tuple[str, str]:
    """(session key, ticket) enctypes of the cached ticket for the IdP's service, as MIT's klist names them."""
    listed = subprocess.run(
        ["klist", "-e", "-c", str(ccache)], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    found = re.search(rf"{re.escape(SPN)}@{REALM}\n.*?Etype \(skey, tkt\): (\S+), (\S+)", listed, re.DOTALL)
    assert found, listed
    return found[1], found[2]


def test_the_ticket_and_the_keytab_are_aes_and_no_rc4_key_is_needed(
    server: IdpServer, kerberos: Path, ad: AdAdmin, tmp_path: Path
):
    ad.add_user("kb.aes", PASSWORD, mail="kb.aes@corp.example.com")
    ccache = _ticket("kb.aes", tmp_path)
    browser, sp = _browser(INSIDE, Negotiate(ccache)), server.sps["open"]
    page = _login_page(browser, sp)[1]
    assert sp.consume(*browser.saml_post(page)).nameid == "kb.aes@corp.example.com"
    # The ticket the IdP just accepted: encrypted with the account's AES key, not RC4.
    session_key, ticket = _service_ticket_enctypes(ccache)
    assert ticket in AES and session_key in AES, (session_key, ticket)
    # The keytab the IdP reads holds AES keys only (MIT's klist, and the IdP's own reader, agree).
    listed = subprocess.run(
        ["klist", "-k", "-e", str(kerberos)], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    held = set(re.findall(rf"^\s*\d+ {re.escape(SPN)}@{REALM} \((\S+)\)", listed, re.MULTILINE))
    assert held and held <= set(AES), listed
    assert ticket in held
    assert {e.enctype for e in read_keytab(kerberos)} == {AES[name] for name in held}


def _shift_clock(ccache: Path, seconds: int) -> None:
    """Make the person's Kerberos library run ``seconds`` ahead of the DC's clock from now on: the DeltaTime
    field of the credential cache (MIT file format 4), which MIT krb5 adds to the time of every request made
    from the cache, as it does for a PC whose clock is off (its authenticators carry the shifted time)."""
    data = ccache.read_bytes()
    assert data[:2] == b"\x05\x04", "not a version 4 credential cache"
    (length,) = struct.unpack_from(">H", data, 2)
    header, rest, kept, at = data[4 : 4 + length], data[4 + length :], b"", 0
    while at < len(header):
        tag, size = struct.unpack_from(">HH", header, at)
        if tag != 1:  # 1: DeltaTime, replaced below
            kept += header[at : at + 4 + size]
        at += 4 + size
    fields = kept + struct.pack(">HHii", 1, 8, seconds, 0)
    ccache.write_bytes(data[:2] + struct.pack(">H", len(fields)) + fields + rest)


def _sign_in_skewed(server: IdpServer, ccache: Path, seconds: int) -> tuple[httpx.Response, Page]:
    """The login page for a new browser whose PC's clock is ``seconds`` ahead, with a Negotiate token from it."""
    _shift_clock(ccache, seconds)
    negotiate = Negotiate(ccache)
    r, page = _login_page(_browser(INSIDE, negotiate), server.sps["open"])
    assert negotiate.offers == 1
    return r, page


def test_a_clock_off_by_more_than_five_minutes_falls_back_to_the_form(server: IdpServer, ad: AdAdmin, tmp_path: Path):
    ad.add_user("kb.clock", PASSWORD, mail="kb.clock@corp.example.com")
    ccache = _ticket("kb.clock", tmp_path)
    _token(ccache)  # the service ticket, got while the clocks agree (the DC checks the skew too)
    r, page = _sign_in_skewed(server, ccache, 240)
    assert r.status_code == 200 and page.is_auto_post, f"{r.status_code}\n{r.text[:800]}"
    r, page = _sign_in_skewed(server, ccache, 360)
    assert r.status_code == 401 and page.is_login, server.log.read_text()[-4000:]
    assert page.text_of("error") == (
        "Signing you in with your Windows logon did not work. Please sign in with your password."
    )
    newest = server.audit_rows(event="signin", result="failure", reason="kerberos_rejected", client_ip=INSIDE)[0]
    assert "Clock skew too great" in newest["detail"], newest["detail"]


def test_krb5_confs_clockskew_is_the_tolerance_the_idp_applies(
    samba_dc, kerberos: Path, ad: AdAdmin, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
):
    """The README's way to tolerate more skew: clockskew in the krb5.conf the IdP reads (it has no setting)."""
    root = tmp_path_factory.mktemp("kerberos-wide-idp")
    wide = _krb5_conf(samba_dc, root / "krb5.conf", "  clockskew = 900\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KRB5_CONFIG", str(wide))
        server = _serve(samba_dc, kerberos, root)
    try:
        ad.add_user("kb.wide", PASSWORD, mail="kb.wide@corp.example.com")
        ccache = _ticket("kb.wide", tmp_path)
        _token(ccache)
        r, page = _sign_in_skewed(server, ccache, 600)
        assert r.status_code == 200 and page.is_auto_post, f"{r.status_code}\n{r.text[:800]}"
        r, page = _sign_in_skewed(server, ccache, 1200)
        assert r.status_code == 401 and page.is_login
        [row] = server.audit_rows(event="signin", result="failure", reason="kerberos_rejected")
        assert "Clock skew too great" in row["detail"], row["detail"]  # this IdP's own audit: one refusal
    finally:
        server.stop()
