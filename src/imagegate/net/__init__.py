"""Outbound HTTP on a client's behalf.

``netguard``: which addresses may be reached, and pinning a connection to the address that was
checked. ``download``: the one way such a request is made: every hop checked and pinned,
redirects followed by hand and checked again, the body capped.
"""
