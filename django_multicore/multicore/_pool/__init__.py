"""The Django-free core: one pool per process, Task, the wire format, the forked processes.

Nothing in this package imports Django (a test checks it): plain-Python users get the pool alone.
"""
