"""Search-quality evaluation on rust-src `library/`: `python -m bench.quality`."""
