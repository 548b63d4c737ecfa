"""A local, stateful GitHub simulator (REST, GraphQL, signed webhooks) for tests, demos and sandbox mode."""
from .simulator import Simulator
from .webhooks import signature_256

__all__ = ["Simulator", "signature_256"]
