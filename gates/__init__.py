"""Offline promotion gates over the shadow log: evaluation (`gates.evaluate`), replay, registry, audit, review.

Nothing here is imported by the serving process.
"""
