"""Windows desktop sign-in at the login page: whether this browser is offered ``Negotiate``, and the SPNEGO
token it answered with. Accepting the token is the sign-in pipeline's job (NegotiateSignIn)."""

from __future__ import annotations

import base64
import binascii
from ipaddress import ip_address

from flask import request

from idp.web.services import services
from idp.web.signin_flow import client_ip

MAX_TOKEN = 64 * 1024
"""Bytes of a Negotiate header we read; a Windows ticket with a large PAC is some 12 KiB in base64."""


def offered() -> bool:
    """``[kerberos]`` is on and the client address (as the app sees it, after trusted proxies) is in one of
    its networks."""
    kerberos = services().settings.kerberos
    address = client_ip()
    if kerberos is None or not kerberos.networks or address is None:
        return False
    try:
        client = ip_address(address)
    except ValueError:
        return False
    return any(client in network for network in kerberos.networks)


def token() -> bytes | None:
    """The token of ``Authorization: Negotiate <base64>``; None when there is none, or it is not base64
    (the form is shown as to a browser that sent nothing)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.casefold() != "negotiate" or not value.strip() or len(value) > MAX_TOKEN:
        return None
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
