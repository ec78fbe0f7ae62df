"""Building and running the embedded mitmproxy."""
