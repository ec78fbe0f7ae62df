"""The proxy's own CA and the trust bundles handed to clients."""
