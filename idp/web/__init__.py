"""The web edge of the IdP (Flask): ``kit`` (the public helpers every view shares:
request limits, client address, cookies, CSRF, language, rendering, security
headers, errors), ``catalog`` (every word of every page, one module per language),
``i18n`` (which language a page speaks), ``oidc_views`` and
``login_views`` (the endpoints), ``app`` (the Flask app without the console),
``templates/`` and ``static/``.
"""
