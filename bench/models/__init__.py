"""Where candidate models come from: local folders, hub ids, and architecture cards."""
