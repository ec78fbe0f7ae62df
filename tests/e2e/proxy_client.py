"""Moved to tests/helpers/proxy_client.py; this name stays for test files that import it."""

from tests.helpers.proxy_client import Reply, client_context, get, open_connection  # noqa: F401
