"""gRPC edge: validation, proto<->domain conversion, identity, error mapping."""
