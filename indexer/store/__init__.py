"""The bottom floor: the only package that speaks SQL. The catalog (source of truth) and its query API,
its schema and migrations, the derived FAISS vectors, and crash-safe files. It imports nothing of
indexer but ``errors``."""
