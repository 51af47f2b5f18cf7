"""The X Chat relay: a NIP-01 relay anyone can run (`xchat relay`)."""
