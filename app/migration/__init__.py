"""Moving users in and out: imports, exports, backups and restores."""
