"""Measuring OpenAI-compatible servers over HTTP: the endpoint spec, the streaming client, the checks."""
