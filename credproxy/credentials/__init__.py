"""The credential core: which credential to send for a URL, and from where.

Imports nothing from mitmproxy (nor from the rest of credproxy), so it is testable without
sockets and answers `credproxy explain` without a proxy running.
"""
