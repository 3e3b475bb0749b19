"""Pure decisions and the YAML policy files they read. No I/O but reading its own files."""
