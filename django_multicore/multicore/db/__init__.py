"""Database connections across forks, and queryset helpers for splitting work (Django only)."""
