"""The composition root: configuration, the services built from it, the database
and its migrations, the durable outbox, the home, ``govtrust serve`` and its TLS
certificate, the app factory, and the ``govtrust`` command with its groups.

The only package that knows every other one: it builds each service from the one
``Config`` and passes it in. Nothing below it imports it.
"""
