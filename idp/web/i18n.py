"""English and Simplified Chinese for every page, chosen by the browser's Accept-Language.

Messages for refusals are keyed by the audit reason, so the words the person reads and the row the admin
reads always describe the same thing.
"""

from __future__ import annotations

from flask import current_app, g, request

LANGUAGES = ("en", "zh-CN")
LANGUAGE_COOKIE = "idp_lang"
"""Set by the language switch on the pages; wins over the browser's Accept-Language."""

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "title.login": "Sign in",
        "this.service": "this service",
        "login.heading": "Sign in with your company account",
        "login.to_service": "to continue to {sp}",
        "login.username": "Username",
        "login.username_hint": "alice, alice@company.com or COMPANY\\alice",
        "login.password": "Password",
        "login.submit": "Sign in",
        "login.footer": "Use the same password as for your Windows computer.",
        "post.continue": "Continue",
        "post.noscript": "JavaScript is off: press Continue to go on to {sp}.",
        "post.heading": "Signing you in to {sp}…",
        "signed_in.heading": "You are signed in",
        "signed_in.as": "Signed in as {name}",
        "signed_in.logout": "Sign out",
        "signed_in.apps": "Your applications",
        "logged_out.heading": "You are signed out",
        "logged_out.text": "Your single sign-on session has ended. Close the browser on a shared computer.",
        "error.heading": "Sign-in cannot continue",
        "error.back": "Go back to the service and try again; if this keeps happening, contact the help desk.",
        "error.not_found": "This page does not exist.",
        "error.internal": "Something went wrong on our side. It has been logged; please try again.",
        "error.csrf": "The sign-in form expired. Please reload the page and try again.",
        "error.login_expired": "This sign-in request has expired. Go back to the service and start again.",
        # sign-in refusals, by audit reason
        "invalid_credentials": "The username or password is incorrect.",
        "missing_username": "Please enter your username.",
        "empty_password": "Please enter your password.",
        "account_disabled": "Your account is disabled. Please contact the help desk.",
        "account_expired": "Your account has expired. Please contact the help desk.",
        "account_locked": "Your account is locked after too many failed attempts. Please contact the help desk.",
        "password_expired": "Your password has expired. Change it (for example on your Windows computer) "
        "and sign in again.",
        "password_must_change": "You must change your password before you can sign in. Change it (for example "
        "on your Windows computer) and sign in again.",
        "logon_hours": "Your account is not allowed to sign in at this time.",
        "workstation_restricted": "Your account is not allowed to sign in from here.",
        "directory_unavailable": "The company directory cannot be reached right now. Please try again in a few "
        "minutes.",
        "service_account_rejected": "Sign-in is unavailable because of a configuration problem. Please contact the "
        "help desk.",
        "directory_error": "Sign-in failed because of a directory problem. Please try again later.",
        "throttled": "Too many failed sign-in attempts. Wait a few minutes and try again.",
        "sp_disabled": "Sign-in to {sp} is switched off. Please contact the help desk.",
        "not_in_allowed_group": "Your account is not allowed to use {sp}. Ask the help desk if you need access.",
        "provisioning_failed": "Your mailbox for {sp} could not be prepared just now, so you cannot sign in yet. "
        "Please try again in a few minutes; if this keeps happening, contact the help desk.",
        # SAML request refusals, by reason
        "unknown_sp": "The service that sent you here is not registered with this sign-in service.",
        "acs_not_in_metadata": "The service asked to receive your sign-in at an address it has not registered.",
        "unsigned_request": "The service's sign-in request was not signed, and this service requires it.",
        "bad_signature": "The service's sign-in request has an invalid signature.",
        "malformed": "The sign-in request from the service is not valid.",
        "too_large": "The sign-in request from the service is too large.",
        "hostile_xml": "The sign-in request from the service contains forbidden XML.",
        "unsupported_binding": "The sign-in request uses a way of sending that is not supported.",
        "missing_request": "No sign-in request was received. Open the service you want to use and sign in there.",
    },
    "zh-CN": {
        "title.login": "登录",
        "this.service": "该服务",
        "login.heading": "使用公司账号登录",
        "login.to_service": "以继续访问 {sp}",
        "login.username": "用户名",
        "login.username_hint": "alice、alice@company.com 或 COMPANY\\alice",
        "login.password": "密码",
        "login.submit": "登录",
        "login.footer": "请使用与 Windows 电脑相同的密码。",
        "post.continue": "继续",
        "post.noscript": "浏览器未启用 JavaScript：请点击“继续”前往 {sp}。",
        "post.heading": "正在登录 {sp}…",
        "signed_in.heading": "您已登录",
        "signed_in.as": "当前用户：{name}",
        "signed_in.logout": "退出登录",
        "signed_in.apps": "我的应用",
        "logged_out.heading": "您已退出登录",
        "logged_out.text": "单点登录会话已结束。如使用公共电脑，请关闭浏览器。",
        "error.heading": "无法继续登录",
        "error.back": "请返回该服务重新尝试；如问题持续，请联系服务台。",
        "error.not_found": "页面不存在。",
        "error.internal": "系统出现错误，已记录，请重试。",
        "error.csrf": "登录表单已过期，请刷新页面后重试。",
        "error.login_expired": "此登录请求已过期，请返回该服务重新开始。",
        "invalid_credentials": "用户名或密码错误。",
        "missing_username": "请输入用户名。",
        "empty_password": "请输入密码。",
        "account_disabled": "您的账号已被禁用，请联系服务台。",
        "account_expired": "您的账号已过期，请联系服务台。",
        "account_locked": "由于多次登录失败，您的账号已被锁定，请联系服务台。",
        "password_expired": "您的密码已过期。请先修改密码（例如在 Windows 电脑上），然后重新登录。",
        "password_must_change": "您需要先修改密码才能登录。请修改密码（例如在 Windows 电脑上）后重新登录。",
        "logon_hours": "当前时间不允许您的账号登录。",
        "workstation_restricted": "不允许您的账号从此处登录。",
        "directory_unavailable": "暂时无法连接公司目录服务，请几分钟后重试。",
        "service_account_rejected": "由于配置问题暂时无法登录，请联系服务台。",
        "directory_error": "目录服务出现问题，登录失败，请稍后重试。",
        "throttled": "登录失败次数过多，请几分钟后再试。",
        "sp_disabled": "{sp} 的登录已关闭，请联系服务台。",
        "not_in_allowed_group": "您的账号无权使用 {sp}。如需访问，请联系服务台。",
        "provisioning_failed": "暂时无法为您准备 {sp} 的邮箱，因此目前无法登录。"
        "请几分钟后重试；如问题持续，请联系服务台。",
        "unknown_sp": "将您转到此处的服务尚未在本登录服务中注册。",
        "acs_not_in_metadata": "该服务要求将登录结果发送到一个未注册的地址。",
        "unsigned_request": "该服务的登录请求未签名，而本服务要求签名。",
        "bad_signature": "该服务的登录请求签名无效。",
        "malformed": "该服务发来的登录请求无效。",
        "too_large": "该服务发来的登录请求过大。",
        "hostile_xml": "该服务发来的登录请求包含被禁止的 XML 内容。",
        "unsupported_binding": "该登录请求使用了不受支持的传输方式。",
        "missing_request": "未收到登录请求。请打开您要使用的服务并从那里登录。",
    },
}


def add_messages(catalog: dict[str, dict[str, str]]) -> None:
    """Add a page's own messages (the admin pages keep theirs beside their code). A key that already exists
    is a mistake: two pages would silently share, or fight over, one text."""
    for lang, texts in catalog.items():
        if lang not in LANGUAGES:
            raise ValueError(f"unknown language {lang!r}")
        clash = texts.keys() & MESSAGES[lang].keys()
        if clash:
            raise ValueError(f"messages defined twice: {', '.join(sorted(clash))}")
        MESSAGES[lang].update(texts)


def current_language() -> str:
    lang = getattr(g, "lang", None)
    if lang is None and request.cookies.get(LANGUAGE_COOKIE) in LANGUAGES:
        lang = g.lang = request.cookies[LANGUAGE_COOKIE]
    if lang is None:
        best = request.accept_languages.best_match(["en", "zh-CN", "zh", "zh-Hans", "zh-SG"])
        if best is None:
            lang = current_app.config.get("IDP_DEFAULT_LANGUAGE", "en")
        else:
            lang = "zh-CN" if best.startswith("zh") else "en"
        g.lang = lang
    return lang


def translate(key: str, **params: str) -> str:
    """The message in the request's language; English when a key has no translation yet."""
    lang = current_language()
    text = MESSAGES[lang].get(key) or MESSAGES["en"].get(key) or key
    return text.format(**params) if params else text
