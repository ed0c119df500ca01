"""The logon request of Alibaba Mail's API Open Platform as we send it, and what each part rests on.

One table serves three readers, as ``idp/provisioning/alimail_contract.py`` does for the provisioning
calls: the client (``idp/connectors/alimail.py``) builds its request from it, the emulator
(``idp/demo/alimail_emulator.py``) refuses any request parameter it does not list, and the tests fail if
the client sends one it does not list. The names here are the defaults; ``[alimail_direct]`` renames them.

``SEEN`` marks a name that appears in Alibaba Mail login URLs and in the third-party templates (SealSuite
names the App ID "App Code"); ``OURS`` marks our own choice, where nothing public names the parameter.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

DOC_PLATFORM = "https://www.alibabacloud.com/help/en/alibaba-mail/latest/open-api-platform"
DOC_FEILIAN = "https://www.volcengine.com/docs/6427/1231585"
DOC_SEALSUITE = "https://docs.byteplus.com/en/docs/sealsuite/docs-alimail-x-sealsuite-custom-sso"
DOC_BAMBOO = "https://open.bccastle.com/en/app_integration/authentication/alimail.html"
DOC_OAUTH = "https://help.aliyun.com/en/document_detail/2937171.html"
DOC_HOSTS = "https://www.alibabacloud.com/help/tc/alibaba-mail/latest/api-access-server-address"

SEEN = "seen"
OURS = "ours"

SIGNED_PARAMS: dict[str, str] = {
    "app_code": SEEN,
    "email": OURS,
    "redirect_url": SEEN,
    "timestamp": OURS,
    "sign": SEEN,
}
"""Every parameter of a signed logon request (``auth = "sign"``)."""

TOKEN_PARAMS: dict[str, str] = {"email": OURS, "redirect_url": SEEN}
"""Every parameter of a logon request that carries an access token instead (``auth = "token"``)."""

ANSWER_FIELDS: dict[str, str] = {"loginUrl": OURS, "expiresIn": OURS}
"""The successful answer: the one-time login URL and its lifetime in seconds."""

ERROR_CODES: dict[str, str] = {
    "InvalidAppCode": "credentials",
    "InvalidSignature": "credentials",
    "InvalidClient": "credentials",
    "InvalidToken": "credentials",
    "PermissionDenied": "not_permitted",
    "UserNotFound": "unknown_user",
    "UserFrozen": "frozen",
}
"""Error codes (``detailErrorCode``, as the Open API writes errors) and what they mean to us; all ours.
A code not listed is judged by its HTTP status (see ``idp/connectors/alimail.py``)."""


def signature(params: Mapping[str, str], secret: str, algorithm: str) -> str:
    """The ``sign`` of ``params`` (every parameter but the signature itself): its ``name=value`` pairs sorted
    by name and joined by ``&``; md5 hashes that string followed by the Secret, hmac-sha256 keys it with the
    Secret. Lower-case hex either way (the ``sign`` seen in login URLs is 32 hex digits, an MD5's length)."""
    canonical = "&".join(f"{name}={params[name]}" for name in sorted(params))
    if algorithm == "md5":
        return hashlib.md5((canonical + secret).encode(), usedforsecurity=False).hexdigest()
    if algorithm == "hmac-sha256":
        return hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    raise ValueError(f"unknown sign algorithm {algorithm!r}")
