"""Benchmarks of userdir against raw LDAP done by ldap3 in the same run (`python -m bench`)."""
