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
        "msg.locked": "账户已被锁定，请稍后再试或联系管理员。",
        "msg.password_expired": "密码已过期，请联系管理员重置密码。",
        "msg.suspended": "账户已被暂停使用，请联系管理员。",
        "msg.left": "该账户已停用。",
        "msg.directory_unavailable": "认证服务暂时不可用，请稍后再试。",
        "msg.throttled": "尝试次数过多，请稍后再试。",
        "msg.csrf": "页面已过期，请重新提交。",
        "msg.missing": "请输入用户名和密码。",
        "msg.must_change": "管理员已重置您的密码，请设置新密码。",
        "title.password": "修改密码",
        "title.password_reset": "重置密码",
        "pw.uid": "用户名",
        "pw.old": "当前密码",
        "pw.new": "新密码",
        "pw.repeat": "再次输入新密码",
        "pw.button": "修改密码",
        "pw.reset_button": "设置新密码",
        "pw.rules": "至少12个字符，包含大写字母、小写字母、数字、符号中的至少三类，"
                    "不能包含用户名，不能与最近使用过的密码相同。",
        "pw.why.expired": "您的密码已过期，请设置新密码后继续登录。",
        "pw.why.reset": "管理员已重置您的密码，请设置您自己的新密码后继续登录。",
        "pw.forgot": "忘记密码？使用数字证书重置",
        "pw.done": "密码已修改。您在其他设备上的登录已结束。",
        "pw.reset_done": "密码已重置。您在其他设备上的登录已结束，请使用新密码登录。",
        "pw.reset_intro": "您已使用数字证书证明身份，可以直接设置新密码，无需输入原密码。",
        "pw.reset_needs": "重置密码需要本次使用数字证书登录并达到三级（证书加动态口令）。",
        "pw.reset_cert": "使用数字证书登录",
        "pw.reset_otp": "再验证动态口令",
        "pw.pending_gone": "修改密码的页面已失效（超时或已使用），请重新登录。",
        "pw.err.missing": "请填写所有密码栏。",
        "pw.err.mismatch": "两次输入的新密码不一致。",
        "pw.err.wrong_old": "当前密码不正确。",
        "pw.err.weak": "新密码不符合密码策略：",
        "pw.err.in_history": "新密码与最近使用过的密码相同，请换一个。",
        "pw.err.too_young": "密码修改过于频繁，请稍后再试。",
        "pw.err.unavailable": "目录服务暂时不可用，请稍后再试。",
        "pw.rule.too_short": "太短",
        "pw.rule.too_long": "太长",
        "pw.rule.too_few_classes": "字符种类不足",
        "pw.rule.control_character": "含有控制字符",
        "pw.rule.contains_uid": "包含用户名",
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
        "msg.locked": "The account is locked. Try again later or contact an administrator.",
        "msg.password_expired": "The password has expired. Ask an administrator to reset it.",
        "msg.suspended": "The account is suspended. Contact an administrator.",
        "msg.left": "The account is no longer in use.",
        "msg.directory_unavailable": "Login is unavailable right now. Try again shortly.",
        "msg.throttled": "Too many attempts. Try again later.",
        "msg.csrf": "The page expired. Please submit it again.",
        "msg.missing": "Enter your user name and password.",
        "msg.must_change": "An administrator reset your password: choose a new one.",
        "title.password": "Change password",
        "title.password_reset": "Reset password",
        "pw.uid": "User name",
        "pw.old": "Current password",
        "pw.new": "New password",
        "pw.repeat": "New password again",
        "pw.button": "Change password",
        "pw.reset_button": "Set new password",
        "pw.rules": "At least 12 characters from three of: upper case, lower case, "
                    "digits, symbols; not containing your user name; not one of your "
                    "recent passwords.",
        "pw.why.expired": "Your password has expired. Choose a new one to continue.",
        "pw.why.reset": "An administrator reset your password. Choose your own to continue.",
        "pw.forgot": "Forgot your password? Reset it with your certificate",
        "pw.done": "Your password is changed. Your logins on other devices have ended.",
        "pw.reset_done": "Your password is reset. Your logins on other devices have "
                         "ended; log in with the new password.",
        "pw.reset_intro": "Your certificate proved who you are: set a new password "
                          "without the old one.",
        "pw.reset_needs": "A reset needs a certificate shown in this login, at level 3 "
                          "(certificate and one-time code).",
        "pw.reset_cert": "Log in with my certificate",
        "pw.reset_otp": "Verify a one-time code as well",
        "pw.pending_gone": "The password change page has expired or was already used. "
                           "Please log in again.",
        "pw.err.missing": "Fill in every password field.",
        "pw.err.mismatch": "The two new passwords differ.",
        "pw.err.wrong_old": "The current password is wrong.",
        "pw.err.weak": "The new password breaks the password policy:",
        "pw.err.in_history": "The new password is one of your recent passwords. "
                             "Choose another.",
        "pw.err.too_young": "The password was changed too recently. Try again later.",
        "pw.err.unavailable": "The directory is unavailable right now. Try again shortly.",
        "pw.rule.too_short": "too short",
        "pw.rule.too_long": "too long",
        "pw.rule.too_few_classes": "too few kinds of characters",
        "pw.rule.control_character": "contains a control character",
        "pw.rule.contains_uid": "contains your user name",
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
