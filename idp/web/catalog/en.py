"""English (en): the language asked for with ?lang=en or Accept-Language.

One entry per key; ``tests/web/test_catalog.py`` checks that every language has
the same keys. Placeholders in braces are filled by ``str.format``.
"""

from __future__ import annotations

from collections.abc import Mapping

WORDS: Mapping[str, str] = {
    # -- sso.*: the IdP's own pages (login, consent, logout, errors); the console falls back to them
    "sso.title.login": "GovTrust single sign-on — log in",
    "sso.title.consent": "Allow access",
    "sso.title.logout": "Log out",
    "sso.title.error": "Something went wrong",
    "sso.title.logged_out": "Logged out",
    "sso.uid": "User name",
    "sso.password": "Password",
    "sso.login": "Log in",
    "sso.login.for": "Log in to continue to:",
    "sso.consent.intro": "This application asks for:",
    "sso.consent.allow": "Allow",
    "sso.consent.deny": "Deny",
    "sso.logout.confirm": "Log out of single sign-on? This ends your login at every app.",
    "sso.logout.button": "Log out",
    "sso.logged_out": "You have logged out.",
    "sso.switch": "中文",
    "sso.msg.bad_credentials": "Wrong user name or password.",
    "sso.msg.locked": "The account is locked. Try again later or contact an administrator.",
    "sso.msg.password_expired": "The password has expired. Ask an administrator to reset it.",
    "sso.msg.suspended": "The account is suspended. Contact an administrator.",
    "sso.msg.left": "The account is no longer in use.",
    "sso.msg.directory_unavailable": "Login is unavailable right now. Try again shortly.",
    "sso.msg.throttled": "Too many attempts. Try again later.",
    "sso.msg.csrf": "The page expired. Please submit it again.",
    "sso.msg.missing": "Enter your user name and password.",
    "sso.scope.openid": "Your identifier",
    "sso.scope.profile": "Your name, user name and title",
    "sso.scope.email": "Your e-mail address",
    "sso.scope.department": "Your department",
    "sso.scope.groups": "Your groups",
    "sso.scope.offline_access": "Access while you are away",
    "sso.error.invalid_request": "The request is not valid.",
    "sso.error.invalid_client": "Unknown application.",
    "sso.error.invalid_redirect": "The return address is not registered; not redirecting.",
    "sso.error.logout": "The logout request is not valid.",
    "sso.error.level": "This application needs a stronger login (e.g. a certificate).",
    "sso.error.not_found": "Page not found.",
    "sso.error.too_large": "The request is too large.",
    "sso.error.unavailable": "The service is unavailable right now. Try again shortly.",
    # -- login.*: certificate and one-time-code login, authenticator enrolment, refusal page
    "login.cert.title": "Log in with a certificate",
    "login.cert.intro": (
        "Log in with your authentication certificate; the browser asks you to choose it."
    ),
    "login.cert.button": "Log in with my certificate",
    "login.cert.none": (
        "No client certificate arrived. Check that your authentication certificate is "
        "installed and chosen in the browser."
    ),
    "login.cert.hwk": (
        "This application needs a certificate held in hardware (a USB key or smart card)."
    ),
    "login.sig.new": "Get a new challenge",
    "login.sig.button": "Submit the signature and sign in",
    "login.sig.signature": "Signature (base64 DER)",
    "login.sig.chain": (
        "Certificate chain (PEM, or comma-separated base64 DER; your "
        "certificate first)"),
    "login.sig.expires": "The challenge is valid for {seconds} seconds and can be used once.",
    "login.sig.challenge": "Challenge (sign the UTF-8 bytes of this string)",
    "login.sig.intro": (
        "Insert your USB key, let its software sign the challenge "
        "below, and submit the certificate chain and the signature. "
        "SM2 (SM3withSM2) and ECDSA certificates are accepted."),
    "login.sig.title": "Sign in with a certificate signature",
    "login.otp.title": "One-time code",
    "login.otp.code": "Six-digit code",
    "login.otp.recovery": "Or a single-use recovery code",
    "login.otp.button": "Verify",
    "login.otp.enrol_link": "No authenticator yet? Enrol one now",
    "login.enrol.title": "Enrol an authenticator",
    "login.enrol.scan": (
        "Scan the QR code with an authenticator app, then enter the six digits it shows."
    ),
    "login.enrol.secret": "If you cannot scan, type this key:",
    "login.enrol.button": "Activate",
    "login.enrol.begin": "Start enrolment",
    "login.enrol.done": (
        "Your authenticator is active. These recovery codes are shown only once; keep "
        "them safe:"
    ),
    "login.enrol.active": "You already have an active authenticator.",
    "login.cancel": "Cancel and return to the application",
    "login.continue": "Continue",
    "login.denied.title": "Access refused",
    "login.denied.back": "Return to the application",
    # -- console.*: self-service and administration
    "console.app": "GovTrust single sign-on",
    "console.skip": "Skip to main content",
    "console.nav.label": "Main navigation",
    "console.nav.profile": "My profile",
    "console.nav.certificates": "My certificates",
    "console.nav.authenticator": "Authenticator",
    "console.nav.sessions": "My sessions",
    "console.nav.signins": "Sign-ins",
    "console.nav.admin": "Administration",
    "console.nav.dashboard": "Dashboard",
    "console.nav.people": "People",
    "console.nav.admin_certs": "Certificates",
    "console.nav.apps": "Department apps",
    "console.nav.audit": "Audit log",
    "console.title.profile": "My profile",
    "console.title.certificates": "My certificates",
    "console.title.certificate_issued": "Certificate issued",
    "console.title.authenticator": "Authenticator (TOTP)",
    "console.title.enrol": "Enrol an authenticator",
    "console.title.recovery": "Recovery codes",
    "console.title.sessions": "My sessions",
    "console.title.signins": "Recent sign-ins",
    "console.title.dashboard": "Dashboard",
    "console.title.people": "People",
    "console.title.person": "Person",
    "console.title.admin_certs": "Certificates",
    "console.title.admin_cert": "Certificate",
    "console.title.issue": "Issue a certificate",
    "console.title.apps": "Department apps",
    "console.title.app": "Edit department app",
    "console.title.app_secret": "App secret",
    "console.title.audit": "Audit log",
    "console.title.denied": "Access denied",
    "console.title.done": "Done",
    "console.uid": "User name",
    "console.name": "Name",
    "console.department": "Department",
    "console.title": "Title",
    "console.email": "E-mail",
    "console.mobile": "Mobile",
    "console.employee_number": "Employee number",
    "console.status": "Status",
    "console.groups": "Groups",
    "console.level": "Assurance level",
    "console.methods": "Methods",
    "console.status.active": "Active",
    "console.status.suspended": "Suspended",
    "console.status.left": "Left",
    "console.cert.valid": "Valid",
    "console.cert.hold": "On hold",
    "console.cert.revoked": "Revoked",
    "console.serial": "Serial",
    "console.profile": "Profile",
    "console.subject": "Subject",
    "console.not_after": "Expires",
    "console.issued_at": "Issued",
    "console.reason": "Reason",
    "console.reason.suspend": "Reason for suspending",
    "console.reason.restore": "Reason for restoring",
    "console.reason.leave": "Reason for marking as left",
    "console.download": "Download",
    "console.none": "None",
    "console.cert.request": "Request a new certificate",
    "console.cert.renew": "Renew",
    "console.cert.by_csr": "Upload a certificate request (CSR)",
    "console.cert.csr_file": "CSR file (PEM)",
    "console.cert.csr_text": "or paste the CSR (PEM)",
    "console.cert.by_pkcs12": "Generate the key on the server (PKCS#12)",
    "console.cert.passphrase": "PKCS#12 passphrase (8 or more characters)",
    "console.cert.submit_csr": "Request",
    "console.cert.submit_pkcs12": "Generate and download",
    "console.cert.issued": "Certificate issued, serial:",
    "console.otp.active": "An authenticator is enrolled.",
    "console.otp.none": "No authenticator is enrolled.",
    "console.otp.pending": "Enrolment is not finished: enter the 6-digit code your app shows.",
    "console.otp.activated_at": "Enrolled at",
    "console.otp.recovery_left": "Recovery codes left",
    "console.otp.failures": "Wrong codes in a row",
    "console.otp.enrol": "Enrol an authenticator",
    "console.otp.reenrol": "Enrol again (the old authenticator stops working)",
    "console.otp.new_codes": "New recovery codes (the old ones stop working)",
    "console.otp.scan": "Scan the QR code with your authenticator app, or type this secret:",
    "console.otp.secret": "Secret",
    "console.otp.qr": "QR code for enrolling the authenticator",
    "console.otp.code": "6-digit code",
    "console.otp.confirm": "Confirm",
    "console.otp.codes_once": (
        "Keep these recovery codes safe. They are shown only once; each works once."
    ),
    "console.otp.activated": "Your authenticator is enrolled.",
    "console.sess.started": "Signed in",
    "console.sess.device": "Device and address",
    "console.sess.expires": "Expires",
    "console.sess.apps": "Apps used",
    "console.sess.current": "(this session)",
    "console.sess.end": "End",
    "console.sess.end_all": "End all other sessions",
    "console.sess.ended": "Session ended.",
    "console.sess.count": "Active sessions",
    "console.signin.time": "Time",
    "console.signin.result": "Result",
    "console.signin.address": "Address",
    "console.result.ok": "Success",
    "console.confirm": "I confirm this action; it cannot be undone",
    "console.confirm.required": "Tick the confirmation box first.",
    "console.auth.verify_first": (
        "This needs more than your password: confirm it is you with your one-time code "
        "(or your certificate) through the link below, then try again."
    ),
    "console.denied.group": (
        "Only security administrators (members of security-admins) may use the "
        "administration pages."
    ),
    "console.denied.level": (
        "The administration pages need assurance level 3 or more (a certificate plus a "
        "second method). This session is at level {level}. Log in again with your "
        "certificate and retry."
    ),
    "console.search": "Search",
    "console.search.by": "Search by",
    "console.search.q": "Search for",
    "console.filter": "Filter",
    "console.any": "Any",
    "console.expiring": "Expiring within (days)",
    "console.results": "Results",
    "console.no_results": "Nothing found.",
    "console.action.suspend": "Suspend",
    "console.action.restore": "Restore",
    "console.action.leave": "Mark as left (revokes certificates, ends sessions)",
    "console.action.reset_otp": "Reset authenticator",
    "console.action.revoke": "Revoke",
    "console.action.hold": "Hold",
    "console.action.release": "Release",
    "console.action.issue": "Issue",
    "console.action.save": "Save",
    "console.action.register": "Register app",
    "console.action.rotate": "Rotate secret (the old one stops working)",
    "console.action.done": "Done.",
    "console.dash.people": "People",
    "console.dash.sessions": "Active sessions",
    "console.dash.certs": "Certificates by status",
    "console.dash.expiring": "Valid certificates expiring within 30 days",
    "console.dash.failed": "Failed sign-ins over the last 24 hours (per hour)",
    "console.dash.failed_total": "{n} failed sign-ins over the last 24 hours",
    "console.app.name": "App name",
    "console.app.client_id": "Client ID",
    "console.app.redirect": "Redirect URIs (one per line)",
    "console.app.level": "Protection level",
    "console.app.info_class": "Information class",
    "console.app.public_client": "Public client (no secret)",
    "console.app.group": "Allowed group (required for restricted)",
    "console.app.departments": "Allowed departments (shared; one per line)",
    "console.app.secret_once": "Save the app secret now; it is shown only once:",
    "console.info.public": "Public",
    "console.info.shared": "Shared between departments",
    "console.info.restricted": "Restricted by law",
    "console.audit.actor": "Actor",
    "console.audit.action": "Action",
    "console.audit.person": "Person (user name)",
    "console.audit.since": "From",
    "console.audit.until": "To",
    "console.audit.target": "Target",
    "console.audit.details": "Details",
    "console.audit.chain_ok": "The hash chain verifies ({n} records).",
    "console.audit.chain_bad": "The hash chain does NOT verify: {problem}",
    "console.err.generic": "That did not work: {reason}",
    "console.err.not_found": "Not found.",
    "console.back": "Back",
    "console.auth.verify_link": "Confirm with my one-time code",
    "console.h.certs": "Certificates",
    "console.yes": "Yes",
    "console.no": "No",
    # -- refusal.*: idp.login.certificate.Refusal: why a client certificate logs nobody in
    "refusal.malformed": "The certificate could not be read.",
    "refusal.too_large": "The certificate is too large.",
    "refusal.unknown_ca": "The certificate was not issued by a trusted authority.",
    "refusal.forged_chain": "The certificate's signature is not valid; this was recorded.",
    "refusal.not_a_ca": "An issuer in the certificate chain may not issue certificates.",
    "refusal.expired": "The certificate has expired; please request a new one.",
    "refusal.not_yet_valid": "The certificate is not valid yet; check this computer's clock.",
    "refusal.is_a_ca": "A certificate authority's certificate cannot be used to log in.",
    "refusal.no_digital_signature": "This certificate cannot sign, so it cannot log in.",
    "refusal.no_client_auth": "This is not an authentication certificate; use one that is.",
    "refusal.revoked": (
        "The certificate has been revoked. Please contact the security administrator."
    ),
    "refusal.on_hold": "The certificate is on hold. Please contact the security administrator.",
    "refusal.not_issued_here": "There is no record of this certificate; this was recorded.",
    "refusal.revocation_unavailable": (
        "The certificate's status cannot be checked now; try again later or log in "
        "another way."
    ),
    "refusal.not_a_person": "This certificate does not belong to a person.",
    "refusal.no_mapping": "No account could be found for this certificate.",
    "refusal.owner_mismatch": "This certificate belongs to someone else.",
    "refusal.person_suspended": (
        "Your account is suspended. Please contact the security administrator."
    ),
    "refusal.person_left": "Your account has been closed.",
    "refusal.untrusted_proxy": "Certificate information from an untrusted source was ignored.",
    "refusal.bad_signature": (
        "The signature does not verify: it is not this certificate's "
        "key's signature over this challenge."),
    "refusal.nonce_expired": "The challenge has expired; please get a new challenge.",
    "refusal.nonce_used": "This challenge has already been used; please get a new challenge.",
    "refusal.malformed_request": (
        "The sign-in request could not be read (challenge or "
        "signature); please get a new challenge and try again."),
    "refusal.nonce_unknown": (
        "The challenge is not valid or was issued to another "
        "browser; please get a new challenge."),
    # -- otp.*: idp.login.totp.OtpResult: what a one-time or recovery code did
    "otp.ok": "Code accepted.",
    "otp.malformed": "A code is six digits.",
    "otp.wrong": "Wrong code.",
    "otp.replayed": "That code was already used; wait for the next one.",
    "otp.not_enrolled": "You have no authenticator yet; please enrol one.",
    "otp.locked": "Too many wrong codes; try again later or contact the administrator.",
    # -- deny.*: policies.assurance.DenyReason: why an app refuses this person
    "deny.suspended": "Your account is suspended, so you cannot use this application.",
    "deny.left": "Your account has been closed (you have left or moved).",
    "deny.department_not_allowed": (
        "This application is open only to certain departments, and yours is not one of "
        "them."
    ),
    "deny.not_in_group": (
        "This application holds restricted information; only members of its group may "
        "use it."
    ),
    "deny.app_misconfigured": (
        "This application's access policy is incomplete, so nobody can use it yet."
    ),
    "deny.level_unavailable": "This application asks for an assurance level that is not offered.",
    # -- contact.*: policies.assurance.Contact: whom a refused person should ask
    "contact.security_admin": "Please contact the security administrator.",
    "contact.personnel_office": "Please contact your personnel office.",
    "contact.app_owner": "Please contact the department that runs this application.",
    "contact.group_admin": "Please ask the administrator of the group to add you.",
    # -- issuance.*: policies.assurance.IssuanceDenyReason: why the console will not issue
    "issuance.not_self_service": (
        "This certificate cannot be requested here. Please contact the security "
        "administrator."
    ),
    "issuance.verify_first": (
        "Confirm it is you with the authenticator or certificate you already hold, then "
        "request this certificate."
    ),
    "issuance.no_established_factor": (
        "You hold no login method set up before this session, so you cannot request this "
        "certificate yourself. Please contact the security administrator."
    ),
    # -- password change, forced change and reset with a certificate
    "sso.msg.must_change": "An administrator reset your password: choose a new one.",
    "sso.title.password": "Change password",
    "sso.title.password_reset": "Reset password",
    "sso.pw.uid": "User name",
    "sso.pw.old": "Current password",
    "sso.pw.new": "New password",
    "sso.pw.repeat": "New password again",
    "sso.pw.button": "Change password",
    "sso.pw.reset_button": "Set new password",
    "sso.pw.rules": (
        "At least 12 characters from three of: upper case, lower case, digits, symbols; "
        "not containing your user name; not one of your recent passwords."
    ),
    "sso.pw.why.expired": "Your password has expired. Choose a new one to continue.",
    "sso.pw.why.reset": "An administrator reset your password. Choose your own to continue.",
    "sso.pw.forgot": "Forgot your password? Reset it with your certificate",
    "sso.sig.link": "Sign in with a certificate signature (USB key)",
    "sso.pw.done": "Your password is changed. Your logins on other devices have ended.",
    "sso.pw.reset_done": (
        "Your password is reset. Your logins on other devices have ended; log in with the"
        " new password."
    ),
    "sso.pw.reset_intro": (
        "Your certificate proved who you are: set a new password without the old one."
    ),
    "sso.pw.reset_needs": (
        "A reset needs a certificate shown in this login, at level 3 (certificate and "
        "one-time code)."
    ),
    "sso.pw.reset_cert": "Log in with my certificate",
    "sso.pw.reset_otp": "Verify a one-time code as well",
    "sso.pw.pending_gone": (
        "The password change page has expired or was already used. Please log in again."
    ),
    "sso.pw.err.missing": "Fill in every password field.",
    "sso.pw.err.mismatch": "The two new passwords differ.",
    "sso.pw.err.wrong_old": "The current password is wrong.",
    "sso.pw.err.weak": "The new password breaks the password policy:",
    "sso.pw.err.in_history": "The new password is one of your recent passwords. Choose another.",
    "sso.pw.err.too_young": "The password was changed too recently. Try again later.",
    "sso.pw.err.unavailable": "The directory is unavailable right now. Try again shortly.",
    "sso.pw.rule.too_short": "too short",
    "sso.pw.rule.too_long": "too long",
    "sso.pw.rule.too_few_classes": "too few kinds of characters",
    "sso.pw.rule.control_character": "contains a control character",
    "sso.pw.rule.contains_uid": "contains your user name",
    "console.nav.password": "Password",
    # -- from h6-sessions
    'console.stepup.intro': (
        "Raise this session's level with one of these, then return to the page "
        'you asked for:'
    ),
    "console.stepup.certificate": "Log in with my certificate",
    "console.stepup.otp": "Confirm with my one-time code",
    "console.stepup.password": "Enter my password",
    'console.issue.approval': (
        'An authentication certificate reaches level 3, so asking for one '
        'yourself needs a way of logging in you had before this session (an '
        'authenticator enrolled earlier and used in this login, or a valid '
        'certificate you logged in with). This session has none, so a security '
        'administrator must issue it: ask one; they can issue it from your page'
        ' in the administration console.'
    ),
    'console.issue.no_factor': (
        'Asking for this kind of certificate yourself needs a way of logging in'
        ' you had before this session (an authenticator enrolled earlier, or a '
        'valid certificate); this session has none. Ask a security '
        'administrator.'
    ),
    'console.issue.not_self_service': (
        'This kind of certificate cannot be requested here; ask a security '
        'administrator.'
    ),
    # -- from h10-kmc
    "console.nav.keys": "My encryption keys",
    "console.nav.key_recovery": "Key recovery",
    "console.title.keys": "My encryption keys (dual certificates)",
    "console.title.key_recovery": "Key recovery approvals",
    'console.kmc.intro': (
        'The private key of an encryption certificate is generated and escrowed'
        ' by the key management centre (KMC), so encrypted records stay '
        'readable if the key is lost. Your signing key stays with you alone and'
        ' is never escrowed.'
    ),
    "console.kmc.issue": "Get an encryption certificate (escrowed key)",
    'console.kmc.issue_hint': (
        'The key is delivered as a PKCS#12 file protected by the passphrase you'
        ' set here.'
    ),
    "console.kmc.recover": "Recover my key",
    "console.kmc.recover_hint": "Recovery needs a level-3 session (certificate + password).",
    "console.kmc.download": "Download PKCS#12",
    "console.kmc.requests": "Recovery requests",
    "console.kmc.new_request": "New recovery request (organisational or judicial)",
    "console.kmc.serial": "Encryption certificate serial",
    "console.kmc.reason": "Reason (case number, authorising document)",
    "console.kmc.submit_request": "Submit request",
    'console.kmc.rule': (
        '{m} key recovery agents must approve, each in their own level-3 '
        'session; the requester cannot approve; the key is delivered once, to '
        'the requester only.'
    ),
    "console.kmc.request": "Request",
    "console.kmc.owner": "Key owner",
    "console.kmc.requester": "Requester",
    "console.kmc.state": "State",
    "console.kmc.approvals": "Approvals",
    "console.kmc.action": "Action",
    "console.kmc.approve": "Approve",
    "console.kmc.collect": "Collect key",
    "console.kmc.state.pending": "pending",
    "console.kmc.state.approved": "approved",
    "console.kmc.state.delivered": "delivered",
    "console.kmc.refused.signing_key": "Signing keys are never escrowed and cannot be recovered.",
    "console.kmc.refused.not_escrowed": "No escrowed key for this certificate.",
    "console.kmc.refused.not_owner": "This is not your own certificate.",
    "console.kmc.refused.level_too_low": "This needs a level-3 session (certificate + password).",
    'console.kmc.refused.no_session': (
        "Without a session the key can only be wrapped to the owner's own "
        'signing certificate.'
    ),
    "console.kmc.refused.not_agent": "You are not a key recovery agent.",
    'console.kmc.refused.not_allowed_to_request': (
        "You may not request recovery of someone else's key."
    ),
    "console.kmc.refused.requester_approval": "The requester cannot approve their own request.",
    "console.kmc.refused.already_approved": "You have already approved this request.",
    "console.kmc.refused.not_pending": "This request is no longer pending.",
    "console.kmc.refused.not_approved": "This request does not have enough approvals yet.",
    "console.kmc.refused.not_requester": "The key is delivered only to the requester.",
    "console.kmc.refused.expired": "This request has expired.",
    "console.kmc.refused.unknown_request": "No such request.",
    "console.kmc.refused.unknown_certificate": "No such certificate.",
    "console.kmc.refused.bad_recipient": "The key cannot be wrapped to that certificate.",
    "console.kmc.refused.weak_passphrase": "The passphrase needs at least 8 characters.",
    "console.kmc.refused.no_reason": "Please give the reason for the recovery.",
    'console.kmc.refused.kek_unavailable': (
        'The escrowed key cannot be opened; contact the administrator.'
    ),
    'console.kmc.refused.sm2_envelope_only': (
        'An SM2 encryption key is delivered only as an SM2 envelope to your SM2 signing '
        'certificate (govtrust kmc recover --wrap-to), not as a PKCS#12.'
    ),
    "console.sess.more": "Showing the newest {shown} of {total} sessions.",
}
