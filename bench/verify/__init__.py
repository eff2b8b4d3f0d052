"""`llmbench verify`: start what a recommendation deploys, behind a real LiteLLM proxy, and measure it
against its plan (spec: what to start; deploy: the llama-servers; proxy: the gateway; load: the
requests; compare: predicted against measured; drill: the fallback drill; run: the whole loop)."""
