"""People of the sync tests, made in the real Samba AD DC as its Administrator, in OUs of their own.

The DC is shared by the whole test session, so every test gets a fresh OU (and unique account names)
and never touches the demo users other tests rely on.
"""

from __future__ import annotations

import secrets
import ssl
from dataclasses import dataclass

from ldap3 import MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE, NONE, Connection, Server, Tls

from idp.demo.samba_dc import BASE_DN, REALM, SambaDC

_TREE_DELETE = "1.2.840.113556.1.4.805"
_UF_NORMAL_ACCOUNT = 0x200
_UF_ACCOUNTDISABLE = 0x2
_GLOBAL_SECURITY = -2147483646
_FILETIME_EPOCH_OFFSET = 11_644_473_600


@dataclass(frozen=True)
class LabUser:
    username: str
    dn: str
    mail: str


class SyncLab:
    """An OU holding the test's people, and an admin connection to change them the way an admin would."""

    def __init__(self, dc: SambaDC, mail_domain: str = "example.com") -> None:
        tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(dc.ca_file), valid_names=[dc.cert_name])
        server = Server(dc.ldaps_url, tls=tls, get_info=NONE, connect_timeout=5)
        self._conn = Connection(server, f"Administrator@{REALM}", dc.admin_password, auto_bind=True, receive_timeout=10)
        self.tag = secrets.token_hex(3)
        self.mail_domain = mail_domain
        self._ous: list[str] = []
        self.ou = self.add_ou(f"SyncTest-{self.tag}")
        self._count = 0

    def add_ou(self, name: str, parent: str = BASE_DN) -> str:
        dn = f"OU={name},{parent}"
        self._check(self._conn.add(dn, ["top", "organizationalUnit"]), f"add {dn}")
        self._ous.append(dn)
        return dn

    def add_user(
        self,
        given: str,
        surname: str = "Tester",
        *,
        department: str | None = "Sales",
        title: str | None = "Engineer",
        mail: str | None = None,
        with_mail: bool = True,
        enabled: bool = True,
        ou: str | None = None,
        username: str | None = None,
        **more: object,
    ) -> LabUser:
        """``with_mail=False`` leaves AD's mail empty; ``more`` sets further attributes (accountExpires,
        servicePrincipalName, proxyAddresses, ...)."""
        self._count += 1
        username = username or f"s{self.tag}{self._count}"
        dn = f"CN={given} {surname} {username},{ou or self.ou}"
        attributes: dict[str, object] = {
            "sAMAccountName": username,
            "userPrincipalName": f"{username}@{REALM}",
            "givenName": given,
            "sn": surname,
            "displayName": f"{given} {surname}",
            "unicodePwd": f'"Passw0rd!{secrets.token_hex(4)}"'.encode("utf-16-le"),
            "userAccountControl": str(_UF_NORMAL_ACCOUNT | (0 if enabled else _UF_ACCOUNTDISABLE)),
            **more,
        }
        if with_mail:
            attributes["mail"] = mail or f"{username}@{self.mail_domain}"
        if department:
            attributes["department"] = department
        if title:
            attributes["title"] = title
        self._check(self._conn.add(dn, ["top", "person", "organizationalPerson", "user"], attributes), f"add {dn}")
        return LabUser(username, dn, str(attributes.get("mail", "")))

    def add_group(self, name: str, members: tuple[str, ...] = (), *, mail: str | None = None) -> str:
        """A global security group in the lab's OU holding ``members`` (DNs of people or groups)."""
        self._count += 1
        dn = f"CN={name},{self.ou}"
        attributes: dict[str, object] = {
            "sAMAccountName": f"g{self.tag}{self._count}",
            "groupType": str(_GLOBAL_SECURITY),
        }
        if mail:
            attributes["mail"] = mail
        self._check(self._conn.add(dn, ["top", "group"], attributes), f"add {dn}")
        for member in members:
            self.add_member(dn, member)
        return dn

    def add_member(self, group_dn: str, member_dn: str) -> None:
        self._check(self._conn.modify(group_dn, {"member": [(MODIFY_ADD, [member_dn])]}), f"add to {group_dn}")

    def remove_member(self, group_dn: str, member_dn: str) -> None:
        self._check(self._conn.modify(group_dn, {"member": [(MODIFY_DELETE, [member_dn])]}), f"remove from {group_dn}")

    def expire(self, user: LabUser, at: float) -> None:
        """accountExpires at epoch second ``at`` (in the past: expired now); ``renew`` undoes it."""
        self.set(user, accountExpires=str(int((at + _FILETIME_EPOCH_OFFSET) * 10**7)))

    def renew(self, user: LabUser) -> None:
        self.set(user, accountExpires="0")

    def delete(self, user: LabUser) -> None:
        """Delete the account the way an admin does: it moves to Deleted Objects."""
        self._check(self._conn.delete(user.dn), f"delete {user.dn}")

    def set(self, user: LabUser, **attributes: str | list[str]) -> None:
        changes = {
            name: [(MODIFY_REPLACE, value if isinstance(value, list) else [value])]
            for name, value in attributes.items()
        }
        self._check(self._conn.modify(user.dn, changes), f"modify {user.dn}")

    def disable(self, user: LabUser) -> None:
        self.set(user, userAccountControl=str(_UF_NORMAL_ACCOUNT | _UF_ACCOUNTDISABLE))

    def enable(self, user: LabUser) -> None:
        self.set(user, userAccountControl=str(_UF_NORMAL_ACCOUNT))

    def move(self, user: LabUser, new_parent: str) -> LabUser:
        rdn = user.dn.split(",", 1)[0]
        self._check(self._conn.modify_dn(user.dn, rdn, new_superior=new_parent), f"move {user.dn}")
        return LabUser(user.username, f"{rdn},{new_parent}", user.mail)

    def close(self) -> None:
        """Remove every OU this lab made, with whoever is in them."""
        for ou in reversed(self._ous):
            self._conn.delete(ou, controls=[(_TREE_DELETE, True, None)])
        self._conn.unbind()

    def _check(self, ok: bool, what: str) -> None:
        if not ok:
            raise AssertionError(f"could not {what}: {self._conn.result}")
