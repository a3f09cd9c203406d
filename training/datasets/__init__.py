"""Dataset readers: each returns a list of Clip records."""
