"""A tiny "webmail" SAML service provider for the demo and the end-to-end tests.

It is built on python3-saml (OneLogin), deliberately not on pysaml2 like the IdP: an SP that shares our SAML
library would share its bugs and accept what it produces. Settings are strict (signed responses *and* signed
assertions, SHA-256 only, Destination/Recipient/audience checks), so that whatever signs in here would sign
in to a real mailbox's SP too.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import flask
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.errors import OneLogin_Saml2_Error, OneLogin_Saml2_ValidationError
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML
from werkzeug.wrappers import Response

from idp.keys.material import new_key_and_certificate

EXTENSION_KEY = "webmail_sp"
KEY_FILE = "sp.key"
CERT_FILE = "sp.crt"
METADATA_FETCH_TIMEOUT = 5


class WebmailError(Exception):
    """The demo SP cannot go on; the message says what to fix."""


class IdpMetadataUnavailable(WebmailError):
    """The IdP's metadata could not be fetched or does not describe a usable IdP (yet)."""


@dataclass(frozen=True)
class ReceivedAttribute:
    name: str
    friendly_name: str | None
    values: tuple[str, ...]


def create_webmail_app(
    *,
    base_url: str,
    idp_metadata_url: str | None = None,
    idp_metadata_xml: str | None = None,
    state_dir: Path,
    sign_requests: bool = True,
    name: str = "Demo Webmail",
) -> flask.Flask:
    """Build the SP as a Flask app served at ``base_url`` (which must be how browsers reach it).

    Exactly one of ``idp_metadata_url`` / ``idp_metadata_xml`` says who the IdP is; it is read at the first
    request that needs it, so the SP may start before the IdP. The SP's key and certificate are generated
    once in ``state_dir`` and reused, so its metadata stays valid across restarts.
    """
    if (idp_metadata_url is None) == (idp_metadata_xml is None):
        raise WebmailError("give exactly one of idp_metadata_url or idp_metadata_xml")
    base_url = base_url.rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise WebmailError(f"base_url {base_url!r} must start with http:// or https://")
    key_pem, cert_pem = _ensure_keypair(Path(state_dir), common_name=urlsplit(base_url).hostname or name)
    sp = _WebmailSp(
        base_url=base_url,
        idp=_IdpMetadata(url=idp_metadata_url, xml=idp_metadata_xml),
        key_pem=key_pem,
        cert_pem=cert_pem,
        sign_requests=sign_requests,
        name=name,
    )

    app = flask.Flask(__name__, template_folder="templates")
    # A fresh secret per start: signing in again after a restart is fine for a demo.
    app.secret_key = secrets.token_bytes(32)
    port = urlsplit(base_url).port or (443 if base_url.startswith("https://") else 80)
    app.config.update(
        # Cookies are not isolated by port: the IdP on 127.0.0.1:8000 and this SP on 127.0.0.1:8025 share a
        # cookie jar, so the SP's session cookie needs a name of its own.
        SESSION_COOKIE_NAME=f"webmail_session_{port}",
        SESSION_COOKIE_HTTPONLY=True,
        # Over https the IdP's POST to /acs is cross-site and must carry the cookie (for the InResponseTo
        # check); browsers drop SameSite=None without Secure, so plain-http loopback demos use Lax.
        SESSION_COOKIE_SECURE=base_url.startswith("https://"),
        SESSION_COOKIE_SAMESITE="None" if base_url.startswith("https://") else "Lax",
    )
    app.extensions[EXTENSION_KEY] = sp
    app.jinja_env.globals["app_name"] = name
    _register_routes(app, sp)
    return app


def sp_metadata_xml(app: flask.Flask) -> str:
    """The SP's metadata (entityID ``<base_url>/metadata``), as the IdP's registry should receive it."""
    return _sp_of(app).metadata_xml()


def _sp_of(app: flask.Flask) -> _WebmailSp:
    try:
        return app.extensions[EXTENSION_KEY]
    except KeyError:
        raise WebmailError("this Flask app was not made by create_webmail_app") from None


def _ensure_keypair(state_dir: Path, *, common_name: str) -> tuple[str, str]:
    """Read the SP's key and certificate from state_dir, making them the first time."""
    key_path, cert_path = state_dir / KEY_FILE, state_dir / CERT_FILE
    if key_path.exists() and cert_path.exists():
        return key_path.read_text(), cert_path.read_text()
    state_dir.mkdir(parents=True, exist_ok=True)
    key_pem, cert_pem = new_key_and_certificate(common_name)
    key_path.touch(mode=0o600)
    key_path.write_text(key_pem)
    cert_path.write_text(cert_pem)
    return key_pem, cert_pem


class _IdpMetadata:
    """The IdP part of the python3-saml settings, read lazily and cached until a sign-in fails."""

    def __init__(self, *, url: str | None, xml: str | None) -> None:
        self._url = url
        self._xml = xml
        self._lock = threading.Lock()
        self._parsed: dict[str, Any] | None = None

    @property
    def source(self) -> str:
        return self._url or "the IdP metadata given as XML"

    def settings(self) -> dict[str, Any]:
        with self._lock:
            if self._parsed is None:
                self._parsed = self._load()
            return self._parsed

    def forget(self) -> None:
        """Read the metadata again next time: the IdP may have rotated its key or restarted elsewhere."""
        with self._lock:
            if self._url is not None:
                self._parsed = None

    def _load(self) -> dict[str, Any]:
        xml = self._xml
        if self._url is not None:
            try:
                xml = OneLogin_Saml2_IdPMetadataParser.get_metadata(self._url, timeout=METADATA_FETCH_TIMEOUT)
            except Exception as exc:  # urllib raises several unrelated types; all mean "not there yet"
                raise IdpMetadataUnavailable(f"cannot read the IdP metadata at {self._url}: {exc}") from exc
        try:
            parsed = OneLogin_Saml2_IdPMetadataParser.parse(xml)
        except Exception as exc:  # malformed XML surfaces as lxml or python3-saml errors
            raise IdpMetadataUnavailable(f"{self.source} is not SAML metadata: {exc}") from exc
        # Only the IdP's own description is taken: its WantAuthnRequestsSigned or NameIDFormat must not
        # silently change what this SP was configured to do.
        idp = parsed.get("idp", {})
        missing = [
            what
            for what, present in (
                ("an entityID", "entityId" in idp),
                ("a SingleSignOnService with the HTTP-Redirect binding", "singleSignOnService" in idp),
                ("a signing certificate", "x509cert" in idp or "x509certMulti" in idp),
            )
            if not present
        ]
        if missing:
            raise IdpMetadataUnavailable(f"{self.source} has no {', '.join(missing)}")
        return idp


class _WebmailSp:
    def __init__(
        self, *, base_url: str, idp: _IdpMetadata, key_pem: str, cert_pem: str, sign_requests: bool, name: str
    ) -> None:
        self.base_url = base_url
        self.name = name
        self.idp = idp
        self._key_pem = key_pem
        self._cert_pem = cert_pem
        self._sign_requests = sign_requests
        self._replays = _ReplayCache()

    def settings_dict(self, idp: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "strict": True,
            "debug": False,
            "sp": {
                "entityId": f"{self.base_url}/metadata",
                "assertionConsumerService": {
                    "url": f"{self.base_url}/acs",
                    "binding": OneLogin_Saml2_Constants.BINDING_HTTP_POST,
                },
                "singleLogoutService": {
                    "url": f"{self.base_url}/sls",
                    "binding": OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT,
                },
                # The IdP's per-SP policy decides the NameID format; the SP does not insist on one.
                "NameIDFormat": OneLogin_Saml2_Constants.NAMEID_UNSPECIFIED,
                "x509cert": self._cert_pem,
                "privateKey": self._key_pem,
            },
            "idp": idp or {},
            # OrganizationDisplayName in our metadata: the IdP's login page names the service by it.
            "organization": {"en-US": {"name": self.name, "displayname": self.name, "url": self.base_url}},
            "security": {
                "authnRequestsSigned": self._sign_requests,
                "logoutRequestSigned": True,
                "logoutResponseSigned": True,
                "wantMessagesSigned": True,
                "wantAssertionsSigned": True,
                "wantNameId": True,
                # An SP policy may release no attributes at all; that is still a valid sign-in.
                "wantAttributeStatement": False,
                # The IdP decides how to authenticate; PasswordProtectedTransport over http would be moot.
                "requestedAuthnContext": False,
                "signatureAlgorithm": OneLogin_Saml2_Constants.RSA_SHA256,
                "digestAlgorithm": OneLogin_Saml2_Constants.SHA256,
                # pysaml2 signs with SHA-1 unless told otherwise (DESIGN.md §6): that must fail here.
                "rejectDeprecatedAlgorithm": True,
                # No validUntil: the registered metadata stays usable as long as the certificate does.
                "metadataValidUntil": "",
            },
        }

    def metadata_xml(self) -> str:
        settings = OneLogin_Saml2_Settings(self.settings_dict(None), sp_validation_only=True)
        metadata = settings.get_sp_metadata()
        errors = settings.validate_metadata(metadata)
        if errors:
            raise WebmailError(f"python3-saml made SP metadata it does not accept itself: {errors}")
        return metadata.decode() if isinstance(metadata, bytes) else metadata

    def auth(self, request: flask.Request) -> OneLogin_Saml2_Auth:
        return OneLogin_Saml2_Auth(self.request_data(request), self.settings_dict(self.idp.settings()))

    def request_data(self, request: flask.Request) -> dict[str, Any]:
        """python3-saml's view of the request, as seen at base_url.

        Strict mode compares the Destination of what the IdP sends with the URL it was sent to; building that
        URL from base_url (not from the Host header) keeps it equal to the ACS URL in our metadata whatever
        name or bind address the browser used.
        """
        base = urlsplit(self.base_url)
        return {
            "https": "on" if base.scheme == "https" else "off",
            "http_host": base.netloc,
            "script_name": base.path + request.path,
            "get_data": request.args.to_dict(),
            "post_data": request.form.to_dict(),
            # Check Redirect-binding signatures over the query exactly as sent, not as re-encoded by us.
            "query_string": request.query_string.decode("latin-1"),
            "validate_signature_from_qs": True,
        }

    def first_use_of(self, assertion_id: str | None, not_on_or_after: int | None) -> bool:
        return self._replays.first_use(assertion_id, not_on_or_after)


class _ReplayCache:
    """Assertion IDs already accepted, kept until they expire: a captured response cannot be posted twice."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}

    def first_use(self, assertion_id: str | None, not_on_or_after: int | None) -> bool:
        if not assertion_id:
            return False
        now = time.time()
        with self._lock:
            self._seen = {k: exp for k, exp in self._seen.items() if exp > now}
            if assertion_id in self._seen:
                return False
            self._seen[assertion_id] = float(not_on_or_after or now + 3600)
            return True


_FAKE_MAILS = (
    ("IT Service Desk", "Welcome to single sign-on", "You signed in with your Active Directory password."),
    ("Payroll", "Your payslip for this month", "Your payslip is ready in the HR portal."),
    ("Facilities", "Fire drill on Thursday", "Please leave the building by the nearest exit at 10:00."),
    ("Security Team", "Never share your password", "We will never ask for your password by mail."),
)


def _register_routes(app: flask.Flask, sp: _WebmailSp) -> None:
    @app.errorhandler(IdpMetadataUnavailable)
    def idp_unavailable(exc: IdpMetadataUnavailable) -> tuple[str, int]:
        return flask.render_template(
            "error.html", title="The identity provider is not reachable", reason=str(exc), errors=[]
        ), 503

    @app.errorhandler(OneLogin_Saml2_Error)
    @app.errorhandler(OneLogin_Saml2_ValidationError)
    def saml_error(exc: Exception) -> tuple[str, int]:
        # e.g. a POST to /acs without a SAMLResponse, or /sls without a logout message
        return flask.render_template(
            "error.html", title="This is not a SAML message this mailbox can use", reason=str(exc), errors=[]
        ), 400

    def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if "nameid" not in flask.session:
                return _start_login(sp, next_path=flask.request.full_path.rstrip("?"))
            return view(*args, **kwargs)

        return wrapped

    @app.get("/")
    @login_required
    def mailbox() -> str:
        return flask.render_template("mailbox.html", user=_user_from_session(), mails=_FAKE_MAILS)

    @app.get("/mail/<int:number>")
    @login_required
    def mail(number: int) -> str | tuple[str, int]:
        if not 0 <= number < len(_FAKE_MAILS):
            return flask.render_template("error.html", title="No such mail", reason="", errors=[]), 404
        return flask.render_template("mail.html", user=_user_from_session(), mail=_FAKE_MAILS[number])

    @app.get("/login")
    def login() -> Response:
        """Start a sign-in explicitly; /login?force_authn=1 makes the IdP ask for the password again."""
        args = flask.request.args
        return _start_login(
            sp,
            next_path=args.get("next", "/"),
            force_authn=args.get("force_authn") == "1",
            is_passive=args.get("is_passive") == "1",
        )

    @app.post("/acs")
    def acs() -> Response | tuple[str, int]:
        auth = sp.auth(flask.request)
        auth.process_response(request_id=flask.session.get("authn_request_id"))
        errors = auth.get_errors()
        if errors or not auth.is_authenticated():
            sp.idp.forget()
            return flask.render_template(
                "error.html",
                title="The sign-in response was rejected",
                reason=auth.get_last_error_reason() or "",
                errors=errors,
            ), 400
        if not sp.first_use_of(auth.get_last_assertion_id(), auth.get_last_assertion_not_on_or_after()):
            return flask.render_template(
                "error.html",
                title="The sign-in response was rejected",
                reason="This assertion was already used (a replayed response).",
                errors=["replayed_assertion"],
            ), 400
        # A new session on sign-in, so that nothing set before it (by anyone) carries over.
        flask.session.clear()
        flask.session.update(
            nameid=auth.get_nameid(),
            nameid_format=auth.get_nameid_format(),
            nameid_nq=auth.get_nameid_nq(),
            nameid_spnq=auth.get_nameid_spnq(),
            session_index=auth.get_session_index(),
            attributes=[dataclasses.asdict(a) for a in _received_attributes(auth)],
        )
        return flask.redirect(_safe_local_path(flask.request.form.get("RelayState")))

    @app.get("/metadata")
    def metadata() -> flask.Response:
        return flask.Response(sp.metadata_xml(), mimetype="application/samlmetadata+xml")

    @app.get("/logout")
    def logout() -> Response | str:
        if "nameid" not in flask.session:
            return flask.redirect("/")
        user = dict(flask.session)
        auth = sp.auth(flask.request)
        # Signed out here at once; the IdP's answer only confirms that its session ended too.
        flask.session.clear()
        if auth.get_slo_url() is None:
            return flask.render_template(
                "signed_out.html",
                note="The identity provider offers no single logout: you are signed out of this mailbox only.",
            )
        url = auth.logout(
            return_to=f"{sp.base_url}/",
            name_id=user.get("nameid"),
            session_index=user.get("session_index"),
            nq=user.get("nameid_nq"),
            name_id_format=user.get("nameid_format"),
            spnq=user.get("nameid_spnq"),
        )
        flask.session["logout_request_id"] = auth.get_last_request_id()
        return flask.redirect(url)

    @app.get("/sls")
    def sls() -> Response | str | tuple[str, int]:
        auth = sp.auth(flask.request)
        url = auth.process_slo(
            request_id=flask.session.pop("logout_request_id", None), delete_session_cb=flask.session.clear
        )
        errors = auth.get_errors()
        if errors:
            return flask.render_template(
                "error.html",
                title="The logout message was rejected",
                reason=auth.get_last_error_reason() or "",
                errors=errors,
            ), 400
        if url:  # the IdP asked us to log out (IdP-initiated SLO): answer it
            return flask.redirect(url)
        return flask.render_template("signed_out.html", note="You are signed out of the identity provider too.")


def _start_login(sp: _WebmailSp, *, next_path: str, force_authn: bool = False, is_passive: bool = False) -> Response:
    auth = sp.auth(flask.request)
    url = auth.login(return_to=_safe_local_path(next_path), force_authn=force_authn, is_passive=is_passive)
    flask.session["authn_request_id"] = auth.get_last_request_id()
    return flask.redirect(url)


def _safe_local_path(relay_state: str | None) -> str:
    """RelayState comes back through the browser: follow it only to a page of this SP (no open redirect)."""
    if relay_state and relay_state.startswith("/") and not relay_state.startswith(("//", "/\\")):
        return relay_state
    return "/"


def _received_attributes(auth: OneLogin_Saml2_Auth) -> list[ReceivedAttribute]:
    """Every attribute with its FriendlyName, which python3-saml reports only in a separate dict by name."""
    values = auth.get_attributes()
    friendly: dict[str, str] = {}
    xml = auth.get_last_response_xml()
    if xml:
        dom = OneLogin_Saml2_XML.to_etree(xml)
        for node in OneLogin_Saml2_XML.query(dom, "//saml:AttributeStatement/saml:Attribute"):
            if node.get("FriendlyName"):
                friendly[node.get("Name")] = node.get("FriendlyName")
    return [ReceivedAttribute(name, friendly.get(name), tuple(vals)) for name, vals in sorted(values.items())]


def _user_from_session() -> dict[str, Any]:
    session = flask.session
    return {
        "nameid": session["nameid"],
        "nameid_format": session.get("nameid_format"),
        "session_index": session.get("session_index"),
        "attributes": [
            ReceivedAttribute(a["name"], a["friendly_name"], tuple(a["values"])) for a in session.get("attributes", [])
        ],
    }
