"""Numba kernels for exact and int8 top-k similarity search (and the read bandwidth they are held to).

Import the submodules you need: `search` (checked entry points), `topk`, `int8`, `bandwidth`,
`reference` (numpy twins), `bench` (the comparison against numpy and faiss). Nothing is imported
here so that `llmbench --help` never loads Numba.
"""
