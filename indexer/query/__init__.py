"""Queries over stored embeddings: search (text, image, combined), classify (a label set over the whole
collection), evaluate (zero-shot accuracy and GZSL), label readers and output sinks. Reads embeddings,
never writes them; imports media, models and store, never ingest."""
