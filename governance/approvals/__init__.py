"""Generation requests from published caption templates, their review and retention."""
