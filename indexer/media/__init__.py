"""Reading any item: scanning sources (folders, archives, lists) into entries, reading an item's bytes
(a file or an archive member), and decoding pictures under pixel and time limits. Used by ingestion,
by image query terms, by the audit report's thumbnails and by the service. Imports only ``errors``."""
