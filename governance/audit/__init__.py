"""The append-only, tamper-evident audit trail: an HMAC hash chain anchored in WORM storage."""
