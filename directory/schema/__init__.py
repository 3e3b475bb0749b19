"""The govPerson LDAP schema template (``govtrust.ldif``); a package so it ships as data."""
