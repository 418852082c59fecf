"""Outbound HTTP on a client's behalf.

``netguard``: which addresses may be reached, and pinning a connection to the address that was
checked.
"""
