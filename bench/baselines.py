"""The yardsticks measured in the same run as the IdP, so ratios stay meaningful on a noisy shared machine.

- pysaml2 signing a response with its default `xmlsec1` subprocess backend (what we replaced first), and
  with our in-process backend (what the IdP did until it built responses itself);
- our own response builder (idp.saml.responses, what the IdP does now), without HTTP, sessions and templates;
- the machine's RSA-2048 signing capacity (`openssl speed`), the floor under any signed response;
- a bare ldap3 re-bind loop on kept-open LDAPS connections, the floor under any password sign-in.
"""

from __future__ import annotations

import base64
import re
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ldap3 import NONE, SIMPLE, Connection, Server, Tls
from saml2 import BINDING_HTTP_POST, saml
from saml2.server import Server as Saml2Server
from saml2.sigver import CryptoBackendXmlSec1

from bench.flows import SIGN_IN_USERS, ResponseSample
from idp.demo.samba_dc import DemoUser, SambaDC
from idp.directory.client import Directory
from idp.keys.material import read_persistent_secret
from idp.saml import backend
from idp.saml.algorithms import DIGEST_ALGORITHM, SIGNATURE_ALGORITHM
from idp.saml.messages import AuthnRequestInfo
from idp.saml.responses import PASSWORD_PROTECTED_TRANSPORT, SamlResponses
from idp.saml.server import SamlServer, idp_config
from idp.settings import Settings, SpDefaults
from idp.sps.policy import SpPolicy
from idp.sps.release import release, released_by_key
from idp.sps.vocabulary import CATALOGUE


class BaselineError(RuntimeError):
    """A baseline could not be measured; the message says which and why."""


@dataclass(frozen=True)
class SigningRate:
    backend: str
    responses: int
    seconds: float
    sample: ResponseSample

    @property
    def per_second(self) -> float:
        return self.responses / self.seconds

    def as_dict(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "responses": self.responses,
            "seconds": round(self.seconds, 3),
            "per_second": round(self.per_second, 2),
        }


def pysaml2_signing_rate(
    settings: Settings,
    sp_metadata: Path,
    sp_entity_id: str,
    acs_url: str,
    request_id: str,
    *,
    in_process: bool,
    seconds: float,
) -> SigningRate:
    """Signed responses per second from one pysaml2 Server, single thread: response and assertion signed,
    RSA-SHA256/SHA-256, the same IdP configuration, key, SP metadata and released attributes as the IdP.

    ``in_process=False`` keeps pysaml2's default crypto backend (a `xmlsec1` process per signature).
    """
    config = idp_config(settings, [sp_metadata])
    config.crypto_backend = "xmlsec1"
    server = Saml2Server(config=config)
    if in_process:
        backend.install(server.sec, config.xmlsec_binary)
    elif type(server.sec.crypto) is not CryptoBackendXmlSec1:
        raise BaselineError(f"expected pysaml2's xmlsec1 subprocess backend, got {type(server.sec.crypto)}")
    with Directory(settings.ldap) as directory:
        person = directory.find(SIGN_IN_USERS[0].username)
    if person is None or not person.mail:
        raise BaselineError(f"{SIGN_IN_USERS[0].username} not found in the benchmark DC")
    identity = {CATALOGUE[k].friendly_name: v for k, v in released_by_key(person, SpDefaults().attributes).items()}

    def one() -> str:
        response = server.create_authn_response(
            identity,
            in_response_to=request_id,
            destination=acs_url,
            sp_entity_id=sp_entity_id,
            name_id=saml.NameID(format=saml.NAMEID_FORMAT_EMAILADDRESS, text=person.mail),
            authn={"class_ref": PASSWORD_PROTECTED_TRANSPORT, "authn_instant": int(datetime.now(UTC).timestamp())},
            sign_response=True,
            sign_assertion=True,
            sign_alg=SIGNATURE_ALGORITHM,
            digest_alg=DIGEST_ALGORITHM,
        )
        # The HTTP-POST binding carries it base64-encoded; the IdP pays for that too.
        return base64.b64encode(str(response).encode("utf-8")).decode("ascii")

    return _signing_loop("in-process xmlsec" if in_process else "xmlsec1 subprocess", one, request_id, acs_url, seconds)


class _OneSp:
    """The SP source of one metadata file, with the default policy (both signatures, a mailbox's attributes)."""

    def __init__(self, metadata: Path, defaults: SpDefaults) -> None:
        self._metadata = metadata
        self._policy = SpPolicy.from_defaults(defaults)

    def metadata_files(self) -> list[Path]:
        return [self._metadata]

    def policy_for(self, entity_id: str) -> SpPolicy:
        return self._policy

    def metadata_expired(self, entity_id: str) -> datetime | None:
        return None

    def version(self) -> str:
        return "1"


def response_builder_rate(
    settings: Settings, sp_metadata: Path, sp_entity_id: str, acs_url: str, request_id: str, *, seconds: float
) -> SigningRate:
    """What pysaml2_signing_rate measures, through the IdP's own response code (idp.saml.responses): the same
    person, attributes, NameID and signatures, single thread, in process."""
    sps = _OneSp(sp_metadata, settings.sp_defaults)
    secret = read_persistent_secret(settings.idp.persistent_id_secret_file)
    responses = SamlResponses(settings, SamlServer(settings, sps), secret)
    policy = sps.policy_for(sp_entity_id)
    with Directory(settings.ldap) as directory:
        person = directory.find(SIGN_IN_USERS[0].username)
    if person is None or not person.mail:
        raise BaselineError(f"{SIGN_IN_USERS[0].username} not found in the benchmark DC")
    request = AuthnRequestInfo(
        request_id, sp_entity_id, sp_entity_id, acs_url, BINDING_HTTP_POST, False, False, None, None
    )
    name_id = responses.name_id(request, policy, person)
    released = release(policy, person)

    def one() -> str:
        form = responses.authn_response(
            request, policy, name_id, released, session_index="bench", authn_instant=datetime.now(UTC)
        )
        return form.fields["SAMLResponse"]

    return _signing_loop("our response builder", one, request_id, acs_url, seconds)


def _signing_loop(name: str, one: Callable[[], str], request_id: str, acs_url: str, seconds: float) -> SigningRate:
    sample = ResponseSample(request_id, acs_url, {"SAMLResponse": one()})
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        one()
        count += 1
    return SigningRate(name, count, time.perf_counter() - started, sample)


@dataclass(frozen=True)
class RsaCapacity:
    sign_per_second: float
    verify_per_second: float
    processes: int
    command: str

    def as_dict(self) -> dict[str, object]:
        return {
            "sign_per_second": self.sign_per_second,
            "verify_per_second": self.verify_per_second,
            "processes": self.processes,
            "command": self.command,
            "responses_per_second_ceiling": round(self.sign_per_second / 2, 1),
        }


_SPEED_LINE = re.compile(r"^rsa\s+2048 bits\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)\s*$", re.MULTILINE)


def rsa2048_capacity(processes: int, seconds: int = 3) -> RsaCapacity:
    """RSA-2048 signatures per second over ``processes`` cores, from `openssl speed`."""
    command = ["openssl", "speed", "-seconds", str(seconds), "-multi", str(processes), "rsa2048"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds * 4 + 60)
    match = _SPEED_LINE.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise BaselineError(
            f"{' '.join(command)} failed or printed no rsa 2048 line:\n{done.stdout[-800:]}{done.stderr[-800:]}"
        )
    return RsaCapacity(float(match.group(1)), float(match.group(2)), processes, " ".join(command))


class LdapRebindClient:
    """One kept-open LDAPS connection per client, re-bound as each sign-in user in turn: the least work any
    password check against AD can do (no user search, no group lookup, no HTTP)."""

    def __init__(self, dc: SambaDC, first_user: int) -> None:
        tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(dc.ca_file), valid_names=[dc.cert_name])
        server = Server(dc.ldaps_url, tls=tls, get_info=NONE, connect_timeout=5)
        self._next_user = first_user
        user = self.prepare()
        self._conn = Connection(
            server,
            user=user.upn,
            password=user.password,
            authentication=SIMPLE,
            receive_timeout=10,
            read_only=True,
            raise_exceptions=False,
        )
        if not self._conn.bind():
            raise BaselineError(f"first bind as {user.upn} failed: {self._conn.result}")

    def prepare(self) -> DemoUser:
        user = SIGN_IN_USERS[self._next_user % len(SIGN_IN_USERS)]
        self._next_user += 1
        return user

    def call(self, user: DemoUser) -> None:
        if not self._conn.rebind(user.upn, user.password, authentication=SIMPLE):
            raise BaselineError(f"re-bind as {user.upn} refused: {self._conn.result.get('description')}")
