"""Test-only changes to the run's AD as its Administrator: extra users and password policies, removed again."""

from __future__ import annotations

import ssl

import ldap3

BASE_DN = "DC=corp,DC=example,DC=com"
GLOBAL_SECURITY = -2147483646
GLOBAL_DISTRIBUTION = 2
_PSO_CONTAINER = f"CN=Password Settings Container,CN=System,{BASE_DN}"


class AdAdmin:
    def __init__(self, samba_dc) -> None:
        tls = ldap3.Tls(
            validate=ssl.CERT_REQUIRED, ca_certs_file=str(samba_dc.ca_file), valid_names=[samba_dc.cert_name]
        )
        self.conn = ldap3.Connection(
            ldap3.Server(samba_dc.ldaps_url, get_info=ldap3.NONE, tls=tls),
            user="Administrator@corp.example.com",
            password=samba_dc.admin_password,
            auto_bind=True,
        )
        self._made: list[str] = []

    def _add(self, dn: str, object_class: str | list[str], attributes: dict) -> str:
        self.conn.add(dn, object_class, attributes)
        assert self.conn.result["result"] == 0, self.conn.result
        self._made.append(dn)
        return dn

    def add_user(self, username: str, password: str, *, mail: str | None = None) -> str:
        attributes = {
            "sAMAccountName": username,
            "userPrincipalName": f"{username}@corp.example.com",
            "givenName": username.title(),
            "sn": "Test",
            "unicodePwd": f'"{password}"'.encode("utf-16-le"),
            "userAccountControl": "512",
        }
        if mail:
            attributes["mail"] = mail
        return self._add(
            f"CN={username},CN=Users,{BASE_DN}", ["top", "person", "organizationalPerson", "user"], attributes
        )

    def add_ou(self, name: str) -> str:
        return self._add(f"OU={name},{BASE_DN}", ["top", "organizationalUnit"], {})

    def add_group(
        self,
        cn: str,
        *,
        members: list[str] = (),
        member_of: list[str] = (),
        container: str = f"CN=Users,{BASE_DN}",
        security: bool = True,
        account_name: str | None = None,
    ) -> str:
        """A global security (or distribution) group in ``container`` with these member DNs, put inside the
        groups named by member_of (cn, in CN=Users). sAMAccountName is unique in the domain: a same-named
        group in another OU needs its own ``account_name``."""
        attributes = {
            "sAMAccountName": account_name or cn.replace(" ", ""),
            "groupType": str(GLOBAL_SECURITY if security else GLOBAL_DISTRIBUTION),
        }
        dn = self._add(f"CN={cn},{container}", ["top", "group"], attributes)
        for member in members:
            self.conn.modify(dn, {"member": [(ldap3.MODIFY_ADD, [member])]})
            assert self.conn.result["result"] == 0, self.conn.result
        for parent in member_of:
            self.conn.modify(f"CN={parent},CN=Users,{BASE_DN}", {"member": [(ldap3.MODIFY_ADD, [dn])]})
            assert self.conn.result["result"] == 0, self.conn.result
        return dn

    def add_member(self, group_dn: str, member_dn: str) -> None:
        self.conn.modify(group_dn, {"member": [(ldap3.MODIFY_ADD, [member_dn])]})
        assert self.conn.result["result"] == 0, self.conn.result

    def remove_member(self, group_dn: str, member_dn: str) -> None:
        self.conn.modify(group_dn, {"member": [(ldap3.MODIFY_DELETE, [member_dn])]})
        assert self.conn.result["result"] == 0, self.conn.result

    def disable(self, user_dn: str) -> None:
        self._account_control(user_dn, 514)  # NORMAL_ACCOUNT | ACCOUNTDISABLE

    def enable(self, user_dn: str) -> None:
        self._account_control(user_dn, 512)

    def _account_control(self, user_dn: str, value: int) -> None:
        self.conn.modify(user_dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [str(value)])]})
        assert self.conn.result["result"] == 0, self.conn.result

    def count_bad_passwords(self, user_dn: str) -> None:
        """AD counts wrong passwords only under a lockout policy: give the user one with a high threshold."""
        self.apply_lockout(user_dn, threshold=1000, window_seconds=1800)

    def apply_lockout(self, user_dn: str, *, threshold: int, window_seconds: int) -> None:
        """A fine-grained password policy (PSO) for this user alone: locked after ``threshold`` wrong passwords,
        counted until ``window_seconds`` pass without one (and locked for as long)."""
        name = user_dn.split(",", 1)[0].removeprefix("CN=")
        interval = str(-window_seconds * 10_000_000)
        self._add(
            f"CN=lockout-{name},{_PSO_CONTAINER}",
            "msDS-PasswordSettings",
            {
                "msDS-PasswordSettingsPrecedence": "5",
                "msDS-PasswordReversibleEncryptionEnabled": "FALSE",
                "msDS-PasswordHistoryLength": "0",
                "msDS-PasswordComplexityEnabled": "FALSE",
                "msDS-MinimumPasswordLength": "0",
                "msDS-MinimumPasswordAge": "0",
                "msDS-MaximumPasswordAge": str(-3650 * 864_000_000_000),
                "msDS-LockoutThreshold": str(threshold),
                "msDS-LockoutObservationWindow": interval,
                "msDS-LockoutDuration": interval,
                "msDS-PSOAppliesTo": user_dn,
            },
        )

    def lockout_time(self, username: str) -> int:
        self.conn.search(BASE_DN, f"(sAMAccountName={username})", attributes=["lockoutTime"])
        return int(self.conn.entries[0].lockoutTime.raw_values[0]) if self.conn.entries[0].lockoutTime else 0

    def dn_of(self, username: str) -> str:
        self.conn.search(BASE_DN, f"(sAMAccountName={username})", attributes=["badPwdCount"])
        return self.conn.entries[0].entry_dn

    def bad_password_count(self, username: str) -> int:
        self.conn.search(BASE_DN, f"(sAMAccountName={username})", attributes=["badPwdCount"])
        return int(self.conn.entries[0].badPwdCount.value or 0)

    def __enter__(self) -> AdAdmin:
        return self

    def __exit__(self, *_: object) -> None:
        self.undo()

    def undo(self) -> None:
        for dn in reversed(self._made):
            self.conn.delete(dn)
        self.conn.unbind()
