"""The stream processors: a Faust app with one module per processor (dedupe, ...)."""
