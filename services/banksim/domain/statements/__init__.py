"""Statement files: the bank's movements of one business day, rendered per format."""
