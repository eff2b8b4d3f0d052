"""Numba kernels for exact and int8 top-k similarity search (and the read bandwidth they are held to).

Import the submodules you need: `search` (checked entry points), `topk`, `int8`, `bandwidth`,
`reference` (numpy twins), `calibrate` (the float32 scan's shape, timed on the machine),
`bench` (the comparison against numpy and faiss). Nothing is imported
here so that `llmbench --help` never loads Numba.
"""
