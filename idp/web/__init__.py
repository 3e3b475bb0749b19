"""The web edge of the IdP (Flask): ``kit`` (the public helpers every view shares:
request limits, client address, cookies, CSRF, language, rendering, security
headers, errors), ``i18n`` (the string catalog), ``oidc_views`` and
``login_views`` (the endpoints), ``app`` (the Flask app without the console),
``templates/`` and ``static/``.
"""
