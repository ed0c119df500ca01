"""The directory client used at every sign-in: find the person, check the password, read their groups.

One sign-in costs three LDAP round trips on already open connections: a search as the service account,
a bind as the person, and a search for their groups (nested membership included). Nothing else.
"""

from __future__ import annotations

import base64
import logging
import time
import unicodedata
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType

from ldap3 import BASE, SIMPLE, SUBTREE, Connection
from ldap3.utils.conv import escape_filter_chars

from idp.directory.account import ACCOUNT_STATE_ATTRIBUTES, account_refusal
from idp.directory.account_state import AccountState, read_account_state
from idp.directory.ad_codes import WRONG_USERNAME_OR_PASSWORD, bind_refusal
from idp.directory.attributes import further_attributes
from idp.directory.eligibility import exclusion
from idp.directory.errors import DirectoryError, InvalidCredentials
from idp.directory.groups import SECURITY_GROUP_BIT, Group, GroupGraph
from idp.directory.lockout import PSO_ATTRIBUTES, LockoutPolicies, LockoutPolicy, filetime_seconds
from idp.directory.pool import ConnectionPool, DomainControllers, PoolStats
from idp.person import Person
from idp.settings import LdapSettings

log = logging.getLogger(__name__)

_PERSON_ATTRIBUTES = (
    "sAMAccountName",
    "userPrincipalName",
    "mail",
    "displayName",
    "givenName",
    "sn",
    "objectGUID",
    "memberOf",
    # Whether the account is a person's at all (idp.directory.eligibility), read in the same search.
    "objectSid",
    "servicePrincipalName",
    # What the throttle needs before a bind: AD's own count of wrong passwords, and which PSO applies.
    "badPwdCount",
    "badPasswordTime",
    "msDS-ResultantPSO",
    "msDS-User-Account-Control-Computed",
)
_UF_LOCKOUT = 0x10
_MAX_USERNAME = 256
_GROUP_PAGE = 1000  # AD's default MaxPageSize


def normalize_username(raw: str, settings: LdapSettings) -> str:
    """What the person typed, in one canonical form: "alice" (sAMAccountName) or "alice@corp.example.com"
    (a UPN or a mail address). "CORP\\alice" becomes "alice" when CORP is our domain.

    Raises InvalidCredentials (with the same message as a wrong password) for a name that cannot be ours.
    """
    # Full-width letters, ligatures and invisible characters (a soft hyphen, a zero-width space) would
    # otherwise make many spellings of one name: NFKC folds the first two, and format characters go.
    name = "".join(c for c in unicodedata.normalize("NFKC", raw) if unicodedata.category(c) != "Cf").strip()
    if "\\" in name:
        domain, _, name = name.partition("\\")
        ours = {settings.domain.casefold(), settings.realm.casefold()} - {""}
        if settings.domain and domain.strip().casefold() not in ours:
            raise InvalidCredentials(WRONG_USERNAME_OR_PASSWORD)
        name = name.strip()
    if not name or len(name) > _MAX_USERNAME or "\\" in name or not name.isprintable():
        raise InvalidCredentials(WRONG_USERNAME_OR_PASSWORD)
    return name.casefold()


@dataclass(frozen=True)
class _Entry:
    dn: str
    attributes: Mapping[str, list[bytes]]
    """Raw values by lower-cased attribute name."""

    def first(self, name: str) -> str | None:
        values = self.attributes.get(name.lower())
        return values[0].decode("utf-8") if values else None


@dataclass(frozen=True)
class Account:
    """An account the service account found for a typed name: whose password is about to be tried."""

    username: str
    """sAMAccountName, as AD spells it."""
    guid: uuid.UUID
    bad_password_count: int
    """AD's own count of wrong passwords (from any source: a PC, Outlook, us), as the answering DC has it."""
    locked: bool
    """AD has locked the account already: a bind is refused without counting, whatever the password."""
    lockout: LockoutPolicy
    entry: _Entry = field(repr=False, compare=False)


class Directory:
    """Active Directory as the sign-in needs it. Thread-safe; keep one per process and close() it at exit."""

    def __init__(self, settings: LdapSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock`` times the group nesting cache (``group_cache_seconds``); tests pass one they can move."""
        self._settings = settings
        if not settings.start_tls and any(url.startswith("ldap://") for url in settings.urls):
            log.warning("ldap:// without start_tls sends passwords in clear text; use ldaps:// or start_tls")
        controllers = DomainControllers(settings)
        self._searches = ConnectionPool(settings, controllers, bind_as_service=True)
        self._binds = ConnectionPool(settings, controllers, bind_as_service=False)
        self._attributes = tuple(dict.fromkeys((*_PERSON_ATTRIBUTES, *further_attributes(settings))))
        self._groups = GroupGraph(self._all_groups, ttl=settings.group_cache_seconds, clock=clock)
        self._lockout = LockoutPolicies(
            self._read_object, settings.base_dn, ttl=settings.group_cache_seconds, clock=clock
        )
        self._bind_seconds = 0.005
        """A running average of bind times (see pretend_bind); AD answers a bind in a few milliseconds."""

    def authenticate(self, username: str, password: str) -> Person:
        """The Person when the password is right; otherwise a DirectoryError subclass saying why not.
        (The sign-in takes the two halves apart, to count the attempt in between: resolve, check_password.)"""
        if not password or not password.strip():
            raise InvalidCredentials(WRONG_USERNAME_OR_PASSWORD)  # before any LDAP traffic
        account = self.resolve(username)
        if account is None:
            self.pretend_bind()
            raise InvalidCredentials(WRONG_USERNAME_OR_PASSWORD)
        return self.check_password(account, password)

    def resolve(self, username: str) -> Account | None:
        """The account a typed name means, found with the service account; None when it names nobody we
        may sign in. Only a found account is ever bound as: a spelling the search does not match never
        reaches AD, so no variant of a name can get past the throttle, which counts by objectGUID."""
        try:
            name = normalize_username(username, self._settings)
        except InvalidCredentials:
            return None
        entry = self._lookup(name)
        if entry is None:
            return None
        guid = entry.attributes.get("objectguid")
        if not guid:
            raise DirectoryError(f"{entry.dn} has no objectGUID; is base_dn an Active Directory domain?")
        lockout = self._lockout.for_pso(entry.first("msDS-ResultantPSO"))
        return Account(
            username=entry.first("sAMAccountName") or name,
            guid=uuid.UUID(bytes_le=guid[0]),
            bad_password_count=_current_bad_passwords(entry, lockout, time.time()),
            locked=bool(int(entry.first("msDS-User-Account-Control-Computed") or 0) & _UF_LOCKOUT),
            lockout=lockout,
            entry=entry,
        )

    def check_password(self, account: Account, password: str) -> Person:
        """Bind as the account: its Person when the password is right, else why not (DirectoryError)."""
        if not password or not password.strip():
            # AD treats a bind with an empty password as an anonymous bind, which "succeeds".
            raise InvalidCredentials(WRONG_USERNAME_OR_PASSWORD)
        started = time.perf_counter()
        ok, result = self._binds.run(lambda conn: _bind(conn, account.entry.dn, password))
        self._bind_seconds += (time.perf_counter() - started - self._bind_seconds) / 8
        if not ok:
            raise bind_refusal(result)
        return self._person(account.entry)

    def pretend_bind(self) -> None:
        """Take about as long as a bind, for a name that names nobody: otherwise the answer's speed alone
        would tell which usernames exist."""
        time.sleep(self._bind_seconds)

    def count_password_policies(self) -> int:
        """Fine-grained password policies (PSOs) the service account may read."""
        container = f"CN=Password Settings Container,CN=System,{self._settings.base_dn}"

        def count(conn: Connection) -> int:
            conn.search(container, "(objectClass=msDS-PasswordSettings)", SUBTREE, attributes=list(PSO_ATTRIBUTES))
            return sum(1 for item in conn.response or () if item.get("type") == "searchResEntry")

        return self._searches.run(count)

    def lockout_policy(self, pso_dn: str | None = None) -> LockoutPolicy:
        """The domain's lockout policy, or a PSO's (as far as the service account may read it)."""
        return self._lockout.for_pso(pso_dn)

    def find(self, username: str) -> Person | None:
        """Look someone up with the service account alone (no password): None when not found."""
        try:
            name = normalize_username(username, self._settings)
        except InvalidCredentials:
            return None
        entry = self._lookup(name)
        return self._person(entry) if entry else None

    def recheck(self, guid: uuid.UUID) -> Person | None:
        """The person as AD has them now, for an SSO session that has no password to bind with: the same
        DirectoryError a bind would get when the account may no longer sign in (account.py), None when they
        are gone (deleted, or moved outside user_filter). By objectGUID, so that a renamed person keeps
        their session and someone who takes over a freed name does not inherit it."""
        value = "".join(f"\\{b:02x}" for b in guid.bytes_le)
        search_filter = f"(&{self._settings.user_filter}(objectGUID={value}))"
        attributes = (*self._attributes, *ACCOUNT_STATE_ATTRIBUTES)
        entries = self._searches.run(lambda conn: self._search(conn, search_filter, attributes, 1))
        if not entries:
            return None
        refusal = account_refusal(entries[0].first, time.time())
        if refusal is not None:
            raise refusal
        return self._person(entries[0])

    def account_state(self, dn: str) -> AccountState | None:
        """The account's state as AD sees it now (the console's helpdesk view); None when it cannot be read."""
        return read_account_state(self._read_object, dn, self._settings.base_dn, time.time())

    def service_principal_owner(self, spn: str) -> tuple[str, int | None] | None:
        """The account holding ``spn`` (``HTTP/sso.corp.example.com``) as (DN, msDS-KeyVersionNumber), for the
        console's Kerberos status; None when no account under base_dn has it."""
        search_filter = f"(servicePrincipalName={escape_filter_chars(spn)})"
        entries = self._searches.run(lambda conn: self._search(conn, search_filter, ("msDS-KeyVersionNumber",), 1))
        if not entries:
            return None
        kvno = entries[0].first("msDS-KeyVersionNumber")
        return entries[0].dn, int(kvno) if kvno and kvno.isdigit() else None

    def dc_time(self) -> datetime | None:
        """The DC's clock (rootDSE currentTime), for the console's clock-skew check; None when unreadable."""
        read = {name.lower(): value for name, value in (self._read_object("", ("currentTime",)) or {}).items()}
        value = read.get("currenttime")
        try:
            return datetime.strptime(value.split(".")[0], "%Y%m%d%H%M%S").replace(tzinfo=UTC) if value else None
        except ValueError:
            return None

    def groups(self) -> list[Group]:
        """Every group under the base DN, read now (the console checks the group names an admin types)."""
        return self._all_groups()

    def pool_stats(self) -> dict[str, PoolStats]:
        """Connections opened and reused so far, by pool ("search" as the service account, "bind" as users)."""
        return {"search": self._searches.stats(), "bind": self._binds.stats()}

    def close(self) -> None:
        self._searches.close()
        self._binds.close()

    def __enter__(self) -> Directory:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _principal(self, name: str) -> str:
        return name if "@" in name else f"{name}@{self._settings.realm}"

    def _lookup(self, name: str) -> _Entry | None:
        value = escape_filter_chars(name)
        by_principal = f"(|(userPrincipalName={value})(mail={value}))"
        wanted = by_principal if "@" in name else f"(sAMAccountName={value})"
        search_filter = f"(&{self._settings.user_filter}{wanted})"
        entries = self._searches.run(lambda conn: self._search(conn, search_filter, self._attributes, 2))
        if len(entries) > 1:
            # A UPN that is also somebody else's mail address: the UPN wins, anything else is ambiguous.
            entries = [e for e in entries if (e.first("userPrincipalName") or "").casefold() == name]
            if len(entries) != 1:
                log.warning("%d directory entries match the sign-in name; refusing to guess", len(entries))
                return None
        return entries[0] if entries else None

    def _read_object(self, dn: str, attributes: tuple[str, ...]) -> dict[str, str] | None:
        """One object's attributes as text (first values), or None when the service account cannot see it."""

        def read(conn: Connection) -> dict[str, str] | None:
            if not conn.search(dn, "(objectClass=*)", BASE, attributes=list(attributes)) or not conn.response:
                return None
            raw = conn.response[0].get("raw_attributes", {})
            return {name: _text(values[0]) for name, values in raw.items() if values}

        return self._searches.run(read)

    def _all_groups(self) -> list[Group]:
        attributes = ("cn", "memberOf", "objectSid", "groupType")
        entries = self._searches.run(lambda conn: self._search(conn, "(objectClass=group)", attributes, 0))
        return [
            Group(
                dn=e.dn,
                cn=e.first("cn") or e.dn,
                parents=tuple(_text(v).lower() for v in e.attributes.get("memberof", ())),
                sid=sid_text(e.attributes["objectsid"][0]) if e.attributes.get("objectsid") else "",
                security=bool(int(e.first("groupType") or 0) & SECURITY_GROUP_BIT),
            )
            for e in entries
        ]

    def _person(self, entry: _Entry) -> Person:
        found = self._groups.memberships(_text(v) for v in entry.attributes.get("memberof", ()))
        security = [g for g in found.security if g.sid]
        guid = entry.attributes.get("objectguid")
        if not guid:
            raise DirectoryError(f"{entry.dn} has no objectGUID; is base_dn an Active Directory domain?")
        sid = entry.attributes.get("objectsid")
        extra = {
            name: tuple(_text(v) for v in entry.attributes[name.lower()])
            for name in further_attributes(self._settings)
            if entry.attributes.get(name.lower())
        }
        return Person(
            username=entry.first("sAMAccountName") or "",
            dn=entry.dn,
            guid=uuid.UUID(bytes_le=guid[0]),
            upn=entry.first("userPrincipalName"),
            mail=entry.first("mail"),
            display_name=entry.first("displayName"),
            given_name=entry.first("givenName"),
            surname=entry.first("sn"),
            groups=tuple(g.cn for g in found.groups),
            group_dns=tuple(g.dn for g in found.groups),
            group_sids=tuple(g.sid for g in security),
            security_group_dns=tuple(g.dn for g in security),
            unique_group_names=tuple(found.unique_names),
            attributes=extra,
            service_account=exclusion(
                self._settings,
                username=entry.first("sAMAccountName") or "",
                dn=entry.dn,
                upn=entry.first("userPrincipalName"),
                sid=sid[0] if sid else None,
                has_spn=bool(entry.attributes.get("serviceprincipalname")),
                in_no_mailbox_group=False,  # a provisioning setting: JIT checks it
            ),
        )

    def _search(
        self, conn: Connection, search_filter: str, attributes: tuple[str, ...], size_limit: int
    ) -> list[_Entry]:
        entries: list[_Entry] = []
        cookie: bytes | None = None
        while True:
            conn.search(
                self._settings.base_dn,
                search_filter,
                SUBTREE,
                attributes=list(attributes),
                size_limit=size_limit,
                paged_size=None if size_limit else _GROUP_PAGE,
                paged_cookie=cookie,
            )
            # 4 = sizeLimitExceeded: the entries that did come back are still good.
            if conn.result.get("result") not in (0, 4):
                raise DirectoryError(
                    f"search under {self._settings.base_dn} failed: {conn.result.get('description')} "
                    f"{conn.result.get('message', '')}".strip()
                )
            for item in conn.response or ():
                # Referrals to other partitions come back as searchResRef items; they are not people.
                if item.get("type") == "searchResEntry":
                    raw = {k.lower(): list(v) for k, v in item["raw_attributes"].items()}
                    entries.append(_Entry(dn=item["dn"], attributes=raw))
            controls = conn.result.get("controls") or {}
            cookie = controls.get("1.2.840.113556.1.4.319", {}).get("value", {}).get("cookie")
            if not cookie:
                return entries


def _current_bad_passwords(entry: _Entry, lockout: LockoutPolicy, now: float) -> int:
    """badPwdCount as AD will judge it: AD leaves the stored value alone until the next attempt, and treats it
    as 0 once the observation window has passed since the last wrong password (badPasswordTime)."""
    count = int(entry.first("badPwdCount") or 0)
    if count and lockout.observation_window:
        last = filetime_seconds(entry.first("badPasswordTime"))
        if last is not None and now - last > lockout.observation_window:
            return 0
    return count


def _bind(conn: Connection, user: str, password: str) -> tuple[bool, dict[str, object]]:
    ok = conn.rebind(user, password, authentication=SIMPLE)
    # The connection goes back to the pool: it must not keep the last person's password.
    conn.password = None
    return bool(ok), dict(conn.result)


def sid_text(value: bytes) -> str:
    """A binary objectSid as AD writes it: S-<revision>-<authority>-<sub-authority>-..."""
    count = value[1]
    authority = int.from_bytes(value[2:8], "big")
    subs = [int.from_bytes(value[8 + 4 * i : 12 + 4 * i], "little") for i in range(count)]
    return "-".join(["S", str(value[0]), str(authority), *map(str, subs)])


def _text(value: bytes) -> str:
    # Binary attributes (a photo, a SID) are not text; base64 keeps them intact in a string.
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii")
