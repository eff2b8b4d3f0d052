"""Serving engines llmbench builds and manages itself (today: llama.cpp's llama-server)."""
