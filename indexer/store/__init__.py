"""Persistence: the SQLite catalog (source of truth), its migrations, and the derived FAISS vectors."""
