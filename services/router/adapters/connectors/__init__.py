"""One package per bank API: a stateless client plus transformers to our outcome model."""
