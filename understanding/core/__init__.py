"""Everything below the gRPC edge, composed: the serving embedding, the analyze
use case, search, media reads, online reindex, and `Core`, which builds and runs
them. Only the entry points (app.py, cli) import `Core`; every other consumer
receives just the collaborators it uses."""
