"""One reader per raw source; each turns its raw files into Food records (per 100 g)."""
