"""Governed caption templates: immutable versions, strict rendering, lint with CLIP's tokenizer."""
