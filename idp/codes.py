"""The stable codes of the audit trail: event names, results, and the reasons a sign-in or request ends.

They are written to the audit trail, counted in metrics, and used as the keys of the words a person or an
admin reads, so each is a ``Literal`` that mypy holds every use to: a code used somewhere but missing here
(and so missing its words) is a type error, not a blank on a page.
"""

from __future__ import annotations

from typing import Literal

AccessReason = Literal[
    "sp_disabled",
    "sp_metadata_expired",
    "not_in_allowed_group",
    "no_role_for_user",
    "sp_cannot_encrypt",
]
"""Why the access decision (idp.access) keeps a person out of an SP."""

DirectoryReason = Literal[
    "invalid_credentials",
    "account_disabled",
    "account_expired",
    "account_locked",
    "password_expired",
    "password_must_change",
    "password_too_short",
    "password_not_complex",
    "password_in_history",
    "password_too_soon",
    "password_rejected",
    "logon_hours",
    "workstation_restricted",
    "directory_unavailable",
    "service_account_rejected",
    "directory_error",
]
"""What Active Directory said to a password (idp.directory.errors)."""

RequestReason = Literal[
    "unknown_sp",
    "acs_not_in_metadata",
    "unsigned_request",
    "bad_signature",
    "malformed",
    "too_large",
    "rate_limited",
    "hostile_xml",
    "unsupported_binding",
    "sp_metadata_expired",
    "missing_request",
    "idp_initiated_not_allowed",
    "request_expired",
    "request_not_yet_valid",
    "replayed_request",
    "wrong_destination",
    "relay_state_not_allowed",
    "unexpected_response",
]
"""Why a SAML request is refused before anyone is asked to sign in (idp.saml.errors)."""

DirectLoginReason = Literal[
    "alimail_app_rejected",
    "alimail_login_not_permitted",
    "alimail_mailbox_unknown",
    "alimail_mailbox_frozen",
    "alimail_rate_limited",
    "alimail_unavailable",
    "alimail_login_rejected",
]
"""Why Alibaba Mail's logon API gave no login URL (idp.connectors.alimail): the ``reason`` of each LoginError."""

SignInReason = Literal[
    AccessReason,
    DirectoryReason,
    DirectLoginReason,
    "missing_username",
    "empty_password",
    "throttled",
    "provisioning_failed",
    "no_passive",
    "no_nameid",
    "no_mail_address",
    "account_not_found",
    "session_revoked",
    "password_mismatch",
    "mfa_wrong_code",
    "mfa_wrong_passkey",
    "mfa_not_enrolled",
    "kerberos_rejected",
    "kerberos_unknown_person",
]
"""Why a sign-in ends without the person getting in: every one has words for the person."""

SignInMethod = Literal["password", "sso_session", "kerberos"]
"""How a sign-in that succeeded was proven: the ``reason`` of a successful ``signin`` row."""

MfaReason = Literal["totp", "recovery_code", "passkey", "remembered_browser", "self_service", "admin_reset"]
"""How a second factor was given (an ``mfa`` row), or who removed factors (``mfa_removed``)."""

LogoutReason = Literal["idp_page", "sp_initiated", "partial", "session_mismatch"]
"""Where a logout started; "partial" when some SP of the session did not confirm it ended its session too,
"session_mismatch" for an SP's LogoutRequest naming a person or session other than the browser's."""

ProvisioningAction = Literal["create", "update", "freeze", "unfreeze", "delete", "cannot_provision"]
"""What the sync does to one mailbox (idp.provisioning.sync); a ``provision`` row's reason names it.
"cannot_provision": AD lacks what a mailbox needs (an address), so nothing is sent."""

MailGroupAction = Literal["group_create", "group_update", "group_delete"]
"""What the sync does to one mail group (a mail-enabled AD group at the provider)."""

ProvisioningReason = Literal[ProvisioningAction, MailGroupAction, "jit", "outbox", "safety_brake", "outbox_dropped"]
"""Which path wrote a ``provision`` row: a sync action, sign-in (jit), a retry (outbox), or the safety brake;
"outbox_dropped": an admin dropped the person's queued work (the console's provisioning page)."""

ProviderReason = Literal[
    "provider_error",
    "provider_not_found",
    "provider_conflict",
    "provider_rate_limited",
    "provider_rejected",
    "provider_unavailable",
    "provider_unsupported",
]
"""What a mailbox provider refused or failed with (idp.provisioning.provider)."""

AdminAccessReason = Literal["admin_not_configured", "admin_not_member", "admin_directory_down"]
"""Why the admin console turns a signed-in person away; each is also the key of the page's words."""

AdminActionReason = Literal[
    "bad_filter",
    "bad_input",
    "usable",
    "not_usable",
    "check_failed",
    "found",
    "not_found",
    "directory_error",
    "lease_held",
    "provisioning_not_configured",
]
"""The outcome of a console action that reads rather than changes: an export, a directory test, a user lookup;
and why a console sync or outbox action was refused (another run holds the sync lease, no [provisioning])."""

KeyReason = Literal[
    "out_of_order",
    "next_key_exists",
    "previous_not_retired",
    "no_next_key",
    "nothing_to_retire",
    "keyring_error",
]
"""Why a key rollover step was refused (idp.keys.keyring) or could not be written."""

SpRegistryReason = Literal[
    "error",
    "invalid_metadata",
    "bad_metadata_signature",
    "entity_id_changed",
    "duplicate_entity_id",
    "unknown_sp",
    "bad_stored_policy",
    "storage_error",
    "fetch_failed",
    "fetch_refused_url",
    "fetch_timeout",
    "fetch_http_error",
    "fetch_too_large",
    "fetch_not_xml",
    "invalid_policy",
    "no_metadata_url",
    "unreadable_source",
]
"""Why the SP registry refused a change (idp.sps.errors); the console and CLI show the error's own sentence."""

AuditReason = Literal[
    SignInReason,
    SignInMethod,
    MfaReason,
    RequestReason,
    LogoutReason,
    ProvisioningReason,
    ProviderReason,
    AdminAccessReason,
    AdminActionReason,
    KeyReason,
    SpRegistryReason,
]
"""Every ``reason`` the audit trail is written with."""

AuditEvent = Literal[
    "signin",
    "logout",
    "saml_request",
    "idp_initiated",
    "provision",
    "admin_access",
    "admin_upload",
    "admin_activity_export",
    "admin_directory_test",
    "admin_alimail_test",
    "admin_user_lookup",
    "sp_added",
    "sp_metadata_refreshed",
    "sp_policy_changed",
    "sp_enabled",
    "sp_disabled",
    "sp_removed",
    "key_rollover_add",
    "key_rollover_switch",
    "key_rollover_retire",
    "session_revoked",
    "admin_sync_started",
    "admin_outbox_retry",
    "admin_outbox_drop",
    "admin_provisioning_lookup",
    "audit_purged",
    "mfa",
    "mfa_enrolled",
    "mfa_removed",
    "password_changed",
    "oidc_code_issued",
    "oidc_token_issued",
    "oidc_refresh_reused",
    "oidc_client_added",
    "oidc_client_removed",
    "oidc_client_changed",
    "oidc_client_secret_rotated",
]
"""What an audit row is about. The column is 40 characters wide (idp.store.models)."""

AuditResult = Literal["success", "failure", "refused"]
"""How it ended: done; tried and went wrong (a wrong password, a provider error, a keyring that cannot be
written); or refused before anything was tried (bad input, no right to do it)."""
