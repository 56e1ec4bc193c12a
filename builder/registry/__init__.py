"""The OCI distribution API: transport, auth, credentials, the client, and `remote` images. Never imports the store."""
