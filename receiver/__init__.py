"""The receiver service (see receiver/app.py)."""
