"""Exporters: recommendation.json, deployment.yaml and gateway/litellm.yaml from a recommendation."""
