"""The console's words against the real IdP (gunicorn, Samba AD): applications are named as people call them
(the admin's name, else the metadata's), with the entityID as secondary text; an SP's metadata source is its
URL or the uploaded file's name; the activity filter lists events in words; ACS endpoints of bindings this IdP
does not use are flagged with what works instead; the Alibaba Cloud role section appears only where a role
preset applies; refusals read as one sentence an admin can act on; badges fit on one line in Chinese."""

from __future__ import annotations

import re
import socket
import uuid
from typing import get_args
from urllib.parse import quote

import pytest

from idp.codes import AuditEvent
from idp.demo.samba_dc import DEMO_USERS
from idp.sps.registry import metadata_filename
from idp.sps.validate import EXPECTED
from tests.e2e.browser import Browser, Page, admin_browser
from tests.e2e.saml_sp import IndependentSp
from tests.e2e.test_admin_browser import shot, sign_in, wait_for
from tests.unit.sp_fixtures import Route, http_server, sp_metadata

pytestmark = pytest.mark.ad

DAVE = next(u for u in DEMO_USERS if u.username == "dave.disabled")
MDUI = "urn:oasis:names:tc:SAML:metadata:ui"
ARTIFACT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact"
PAOS = "urn:oasis:names:tc:SAML:2.0:bindings:PAOS"
UNSUPPORTED = (
    "This IdP does not support {binding} and never sends to this address; sign-in responses go to the "
    "application's HTTP-POST address."
)


def with_display_name(xml: bytes, name: str) -> bytes:
    """The metadata with an mdui:DisplayName, the name SP consoles put in their metadata."""
    ui = (
        f'<md:Extensions><mdui:UIInfo xmlns:mdui="{MDUI}"><mdui:DisplayName xml:lang="en">{name}</mdui:DisplayName>'
        "</mdui:UIInfo></md:Extensions>"
    ).encode()
    return re.sub(rb"(<md:SPSSODescriptor[^>]*>)", lambda m: m.group(1) + ui, xml, count=1)


def with_acs(xml: bytes, *extra: tuple[str, str], keep_post: bool = True) -> bytes:
    """The metadata with more AssertionConsumerService endpoints (binding, location), optionally without its
    HTTP-POST one."""
    endpoints = b"".join(
        f'<md:AssertionConsumerService Binding="{b}" Location="{loc}" index="{n}"/>'.encode()
        for n, (b, loc) in enumerate(extra, start=10)
    )
    return re.sub(
        rb"<md:AssertionConsumerService [^>]*/>",
        lambda m: (m.group(0) if keep_post else b"") + endpoints,
        xml,
        count=1,
    )


def upload(admin: Browser, base: str, xml: bytes, name: str) -> Page:
    page = admin.get(base + "/admin/sps")
    return admin.submit(page, "sp-upload", files={"metadata": (name, xml)})


def sp_row(page: Page, entity_id: str):
    [row] = page.doc().xpath(f'//table[@id="sps"]//tr[@data-entity-id="{entity_id}"]')
    return row


def assert_plain_words(text: str) -> None:
    """No chained exception text, no Python repr, no sentence said twice."""
    assert "Error:" not in text and "Exception" not in text and "Traceback" not in text, text
    assert not re.search(r"\w+\(\w+=", text), text  # a repr such as DTDForbidden(name='m', ...)
    assert not re.search(r"\[Errno \d+\]", text), text
    sentences = [s.strip() for s in re.split(r"[.;:]\s", text) if len(s.strip()) > 20]
    assert len(sentences) == len(set(sentences)), text


@pytest.fixture(scope="module")
def admin(idp_server) -> Browser:
    return admin_browser(idp_server.base_url)


@pytest.fixture(scope="module")
def payroll(idp_server, admin: Browser) -> IndependentSp:
    """An SP uploaded once through the console, named in its metadata, with an Artifact and an ECP endpoint
    besides its HTTP-POST one."""
    tag = uuid.uuid4().hex[:8]
    sp = IndependentSp(
        entity_id=f"https://payroll-{tag}.wording.test/saml",
        acs_url=f"http://127.0.0.1:9600/payroll-{tag}/acs",
        sign_requests=False,
        idp_metadata_xml=idp_server.metadata(),
    )
    xml = with_acs(
        with_display_name(sp.metadata_xml(), "Payroll Portal"),
        (ARTIFACT, "https://payroll.wording.test/artifact"),
        (PAOS, "https://payroll.wording.test/ecp"),
    )
    preview = upload(admin, idp_server.base_url, xml, "payroll-prod.xml")
    assert preview.status == 200, preview.html[:800]
    flagged = preview.doc().xpath('//dd[@id="preview-acs"]//span[contains(@class, "acs-unsupported")]')
    assert [(b.get("data-binding"), b.text_content().strip()) for b in flagged] == [
        (ARTIFACT, "HTTP-Artifact #10"),
        (PAOS, "PAOS (ECP) #11"),
    ]
    why = [w.text_content().strip() for w in preview.doc().xpath('//dd[@id="preview-acs"]//small')]
    assert why == [UNSUPPORTED.format(binding="HTTP-Artifact"), UNSUPPORTED.format(binding="PAOS (ECP)")]
    saved = admin.submit(preview, "sp-save")
    assert saved.status == 200 and "Saved Payroll Portal." in saved.html
    return sp


def test_the_dashboard_names_applications_and_keeps_the_entity_id_as_secondary_text(
    idp_server, admin: Browser, payroll: IndependentSp
) -> None:
    employee = Browser()
    refused = employee.login(employee.get(payroll.redirect_login_url()), DAVE.username, DAVE.password)
    assert not refused.is_auto_post

    def failure_cell(page: Page):
        cells = page.doc().xpath(
            f'//table[@id="recent-failures"]//td[contains(@class, "sp-cell")][.//*[text()="{payroll.entity_id}"]]'
        )
        assert cells, page.html[:2000]
        return cells[0]

    cell = failure_cell(admin.get(idp_server.base_url + "/admin/"))
    assert cell.xpath('.//span[@class="sp-name"]')[0].text_content() == "Payroll Portal"
    assert cell.xpath('.//small[contains(@class, "sp-entity-id")]')[0].text_content() == payroll.entity_id

    # The admin's own name for the SP wins over the metadata's, there and on the list.
    policy = admin.get(f"{idp_server.base_url}/admin/sps/policy?entity_id={quote(payroll.entity_id, safe='')}")
    saved = admin.submit(policy, "policy-form", {"display_name": "Payroll (HR)"})
    assert saved.status == 200, saved.html[:800]
    cell = failure_cell(admin.get(idp_server.base_url + "/admin/"))
    assert cell.xpath('.//span[@class="sp-name"]')[0].text_content() == "Payroll (HR)"
    row = sp_row(admin.get(idp_server.base_url + "/admin/sps"), payroll.entity_id)
    assert row.xpath('.//td[@class="sp-name"]')[0].text_content().strip() == "Payroll (HR)"


def test_the_source_is_the_uploaded_files_name_or_typed_by_hand_never_a_hash(
    idp_server, admin: Browser, payroll: IndependentSp
) -> None:
    page = admin.get(idp_server.base_url + "/admin/sps")
    source = sp_row(page, payroll.entity_id).xpath('.//td[contains(@class, "sp-source")]')[0]
    assert source.xpath('.//*[@data-origin="file"]')
    assert "Metadata file payroll-prod.xml" in " ".join(source.text_content().split())
    assert "by anna" in source.text_content()
    assert metadata_filename(payroll.entity_id) not in page.html

    tag = uuid.uuid4().hex[:8]
    by_hand = IndependentSp(
        entity_id=f"https://typed-{tag}.wording.test/saml",
        acs_url=f"http://127.0.0.1:9600/typed-{tag}/acs",
        sign_requests=False,
        idp_metadata_xml=idp_server.metadata(),
    )
    fields = {"entity_id": by_hand.entity_id, "acs_url": by_hand.acs_url, "certificate": by_hand.cert_pem}
    admin.submit(admin.submit(page, "sp-manual", fields), "sp-save")
    chinese = admin_browser(idp_server.base_url)
    chinese.http.headers["Accept-Language"] = "zh-CN"
    listed = chinese.get(idp_server.base_url + "/admin/sps")
    source = sp_row(listed, by_hand.entity_id).xpath('.//td[contains(@class, "sp-source")]')[0]
    assert source.xpath('.//*[@data-origin="manual"]') and "手动填写" in source.text_content()
    source = sp_row(listed, payroll.entity_id).xpath('.//td[contains(@class, "sp-source")]')[0]
    assert "元数据文件 payroll-prod.xml" in " ".join(source.text_content().split())


def test_unsupported_acs_bindings_are_flagged_on_the_list_and_metadata_with_only_those_is_refused(
    idp_server, admin: Browser, payroll: IndependentSp
) -> None:
    row = sp_row(admin.get(idp_server.base_url + "/admin/sps"), payroll.entity_id)
    flagged = row.xpath('.//td[contains(@class, "sp-acs")]//span[contains(@class, "acs-unsupported")]')
    assert [b.text_content() for b in flagged] == ["HTTP-Artifact", "PAOS (ECP)"]
    assert UNSUPPORTED.format(binding="PAOS (ECP)") in row.text_content()

    entity = f"https://artifact-only-{uuid.uuid4().hex[:8]}.wording.test/saml"
    only = with_acs(sp_metadata(entity), (ARTIFACT, "https://a.wording.test/artifact"), keep_post=False)
    refused = upload(admin, idp_server.base_url, only, "artifact-only.xml")
    assert refused.status == 400
    assert refused.text_of("problem-reason") == (
        "no AssertionConsumerService uses the HTTP-POST binding, only HTTP-Artifact, which this IdP does not "
        "support: it sends sign-in responses by HTTP-POST only, so ask the application's administrator for "
        "metadata with an HTTP-POST AssertionConsumerService (urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST)"
    )


def test_the_activity_filter_lists_every_event_in_words(idp_server, admin: Browser, payroll) -> None:
    page = admin.get(idp_server.base_url + "/admin/activity")
    options = page.doc().xpath('//select[@id="f-event"]/option')
    words = {o.get("value"): o.text_content().strip() for o in options}
    assert set(words) == {"", *get_args(AuditEvent)}
    assert (words["signin"], words["sp_added"]) == ("Sign-in", "Application added")
    assert all(words[code] != code for code in get_args(AuditEvent)), words  # none falls back to its code
    shown = [o.text_content().strip() for o in options[1:]]
    assert shown == sorted(shown, key=str.casefold)

    filtered = admin.get(idp_server.base_url + "/admin/activity?event=sp_added")
    assert filtered.doc().xpath('//select[@id="f-event"]/option[@selected]')[0].get("value") == "sp_added"
    events = {td.get("data-code") for td in filtered.doc().xpath('//table[@id="audit-rows"]//tr/td[2]')}
    assert events == {"sp_added"}

    chinese = Browser(accept_language="zh-CN")
    chinese.http.cookies.update(admin.http.cookies)
    zh = chinese.get(idp_server.base_url + "/admin/activity")
    zh_words = {o.get("value"): o.text_content().strip() for o in zh.doc().xpath('//select[@id="f-event"]/option')}
    assert (zh_words["signin"], zh_words["sp_added"]) == ("登录", "添加应用")


def test_the_role_section_shows_only_where_a_role_preset_applies(idp_server, admin: Browser, payroll) -> None:
    url = f"{idp_server.base_url}/admin/sps/policy?entity_id={quote(payroll.entity_id, safe='')}"
    assert admin.get(url).doc().xpath('//*[@id="roles-section"]') == []
    assert admin.get(url + "&preset=aliyun_ram_user").doc().xpath('//*[@id="roles-section"]') == []
    role = admin.get(url + "&preset=aliyun_ram_role")
    assert role.doc().xpath('//*[@id="roles-section"]//table[@id="role-table"]')


def test_refusals_read_as_one_sentence_naming_what_was_expected(idp_server, admin: Browser) -> None:
    csv = upload(admin, idp_server.base_url, b"name,mail\nalice,alice@example.com\n", "staff.csv")
    assert csv.status == 400
    assert csv.text_of("problem-reason") == f"this file is not XML; expected {EXPECTED}"
    assert_plain_words(csv.text_of("sp-problem") or "")

    broken = upload(admin, idp_server.base_url, sp_metadata("https://broken.wording.test/saml")[:-40], "cut.xml")
    assert broken.status == 400
    reason = broken.text_of("problem-reason") or ""
    assert reason.startswith("the XML is not well-formed (") and reason.endswith(f"); expected {EXPECTED}")
    assert_plain_words(broken.text_of("sp-problem") or "")

    typed = admin.submit(
        admin.get(idp_server.base_url + "/admin/sps"),
        "sp-manual",
        {
            "entity_id": "https://typed.wording.test/saml",
            "acs_url": "https://typed.wording.test/acs",
            "certificate": "hello",
        },
    )
    assert typed.status == 400
    assert typed.text_of("problem-reason") == (
        "not a PEM or base64 DER X.509 certificate: the text is not base64; copy the certificate again, whole, "
        "from the application's console or metadata"
    )
    assert_plain_words(typed.text_of("sp-problem") or "")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, never listening: the connection is refused
        url = f"http://127.0.0.1:{s.getsockname()[1]}/metadata"
        unreachable = admin.submit(
            admin.get(idp_server.base_url + "/admin/sps"), "sp-url", {"url": url, "allow_http": "on"}
        )
    assert unreachable.status == 400
    assert unreachable.text_of("problem-reason") == (
        f"{url} cannot be downloaded: the server refused the connection; check the URL and that the server is running"
    )
    assert unreachable.text_of("problem-code") == "fetch_failed"
    assert_plain_words(unreachable.text_of("sp-problem") or "")


def test_a_failed_refresh_says_what_failed_once_and_keeps_the_last_copy(idp_server, admin: Browser) -> None:
    entity = f"https://refreshed-{uuid.uuid4().hex[:8]}.wording.test/saml"
    with http_server({"/md": Route(sp_metadata(entity))}) as base:
        url = f"{base}/md"
        preview = admin.submit(
            admin.get(idp_server.base_url + "/admin/sps"), "sp-url", {"url": url, "allow_http": "on"}
        )
        assert preview.status == 200, preview.html[:800]
        listed = admin.submit(preview, "sp-save")
    source = sp_row(listed, entity).xpath('.//td[contains(@class, "sp-source")]')[0]
    assert url in source.text_content()
    form = sp_row(listed, entity).xpath('.//form[contains(@action, "/sps/refresh")]')[0].get("id")
    after = admin.submit(listed, form)  # the server is gone now
    problem = (
        f"{url} cannot be downloaded: the server refused the connection; check the URL and that the server is running"
    )
    flashes = [p.text_content() for p in after.doc().xpath('//p[contains(@class, "flash")]')]
    assert flashes == [f"{problem}. The last good copy is kept."]
    [last] = sp_row(after, entity).xpath('.//*[contains(@class, "sp-refresh-error")]')
    assert last.text_content() == f"Last try: {problem}"
    assert_plain_words(sp_row(after, entity).text_content())
    row = idp_server.audit_rows(event="sp_metadata_refreshed", sp_entity_id=entity)[0]
    assert row["result"] == "refused" and row["detail"].count(url) == 1


@pytest.mark.browser
def test_badges_fit_on_one_line_in_chinese(idp_server, chrome, payroll) -> None:
    chrome.get(idp_server.base_url + "/admin/")
    wait_for(chrome, "username")
    sign_in(chrome, "anna")
    wait_for(chrome, "key-summary")
    chrome.get(idp_server.base_url + "/lang?to=zh-CN&next=/admin/sps")
    try:
        for path, element in (
            ("/admin/sps", "sps"),
            ("/admin/activity", "activity-filter"),
            ("/admin/", "key-summary"),
        ):
            chrome.set_window_size(1100, 900)  # a laptop's width, as the suite's browser starts
            chrome.get(idp_server.base_url + path)
            wait_for(chrome, element)
            badges = chrome.execute_script(
                """return [...document.querySelectorAll('span.badge')].map(b => ({
                       text: b.textContent.trim(), lines: b.getClientRects().length,
                       height: b.getBoundingClientRect().height,
                       lineHeight: parseFloat(getComputedStyle(b).fontSize) * 2.2,
                       overflow: b.scrollWidth - b.clientWidth}))"""
            )
            assert badges, path
            shot(chrome, f"admin-zh-badges-{element}")
            broken = [b for b in badges if b["lines"] != 1 or b["height"] > b["lineHeight"] or b["overflow"] > 1]
            assert broken == [], (path, broken)
    finally:
        chrome.get(idp_server.base_url + "/lang?to=en&next=/admin/")
