"""The login pages' language: Simplified Chinese by default, English on request.

Chosen by ``?lang=`` (remembered in a cookie), then the cookie, then the
``Accept-Language`` header (RFC 9110 section 12.5.4); anything else is zh-CN.
"""

from __future__ import annotations

from collections.abc import Mapping

LANGS = ("zh-CN", "en")
COOKIE = "gt_lang"

STRINGS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "title.login": "统一身份认证 — 登录",
        "title.consent": "授权确认",
        "title.logout": "退出登录",
        "title.error": "出错了",
        "title.logged_out": "已退出",
        "uid": "用户名",
        "password": "密码",
        "login": "登录",
        "login.for": "登录以访问：",
        "consent.intro": "该应用请求获取您的以下信息：",
        "consent.allow": "同意",
        "consent.deny": "拒绝",
        "logout.confirm": "确定要退出统一身份认证吗？所有应用的登录都会结束。",
        "logout.button": "退出",
        "logged_out": "您已退出登录。",
        "switch": "English",
        "msg.bad_credentials": "用户名或密码错误。",
        "msg.password_expired": "密码已过期，请联系管理员重置密码。",
        "msg.suspended": "账户已被暂停使用，请联系管理员。",
        "msg.left": "该账户已停用。",
        "msg.directory_unavailable": "认证服务暂时不可用，请稍后再试。",
        "msg.throttled": "尝试次数过多，请稍后再试。",
        "msg.csrf": "页面已过期，请重新提交。",
        "msg.missing": "请输入用户名和密码。",
        "scope.openid": "您的身份标识",
        "scope.profile": "姓名、用户名和职务",
        "scope.email": "电子邮箱",
        "scope.department": "所在部门",
        "scope.groups": "所属群组",
        "scope.offline_access": "在您离线时继续访问",
        "error.invalid_request": "请求无效。",
        "error.invalid_client": "未知的应用。",
        "error.invalid_redirect": "回调地址未登记，已拒绝跳转。",
        "error.logout": "退出请求无效。",
        "error.level": "该应用要求更高等级的登录方式（如数字证书），当前登录方式不足。",
        "error.not_found": "页面不存在。",
        "error.too_large": "请求过大。",
    },
    "en": {
        "title.login": "GovTrust single sign-on — log in",
        "title.consent": "Allow access",
        "title.logout": "Log out",
        "title.error": "Something went wrong",
        "title.logged_out": "Logged out",
        "uid": "User name",
        "password": "Password",
        "login": "Log in",
        "login.for": "Log in to continue to:",
        "consent.intro": "This application asks for:",
        "consent.allow": "Allow",
        "consent.deny": "Deny",
        "logout.confirm": "Log out of single sign-on? This ends your login at every app.",
        "logout.button": "Log out",
        "logged_out": "You have logged out.",
        "switch": "中文",
        "msg.bad_credentials": "Wrong user name or password.",
        "msg.password_expired": "The password has expired. Ask an administrator to reset it.",
        "msg.suspended": "The account is suspended. Contact an administrator.",
        "msg.left": "The account is no longer in use.",
        "msg.directory_unavailable": "Login is unavailable right now. Try again shortly.",
        "msg.throttled": "Too many attempts. Try again later.",
        "msg.csrf": "The page expired. Please submit it again.",
        "msg.missing": "Enter your user name and password.",
        "scope.openid": "Your identifier",
        "scope.profile": "Your name, user name and title",
        "scope.email": "Your e-mail address",
        "scope.department": "Your department",
        "scope.groups": "Your groups",
        "scope.offline_access": "Access while you are away",
        "error.invalid_request": "The request is not valid.",
        "error.invalid_client": "Unknown application.",
        "error.invalid_redirect": "The return address is not registered; not redirecting.",
        "error.logout": "The logout request is not valid.",
        "error.level": "This application needs a stronger login (e.g. a certificate).",
        "error.not_found": "Page not found.",
        "error.too_large": "The request is too large.",
    },
}


def choose(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    for value in (query, cookie):
        if value in LANGS:
            return value
        if value and value.lower().startswith("en"):
            return "en"
        if value and value.lower().startswith("zh"):
            return "zh-CN"
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return "zh-CN"


def translator(lang: str) -> Mapping[str, str]:
    return STRINGS.get(lang, STRINGS["zh-CN"])
