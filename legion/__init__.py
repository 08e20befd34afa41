"""Legion for Python."""
