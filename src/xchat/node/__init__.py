"""The X Chat node: the user's daemon (relay pool, outbox/inbox, local API)."""
