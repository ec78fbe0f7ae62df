"""mitmproxy addons: thin translations between flows and the credential core."""
