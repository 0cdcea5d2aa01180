"""Feature commands of `passnum` (each module defines `register(app)`)."""
