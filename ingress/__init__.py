"""The HTTP ingress: Onoff's webhooks in, Avro records to Kafka out.

Errors (all derive from `IngressError`; `errors.py` maps each to a status)::

    IngressError
    ├── AuthenticationError        missing or wrong API key            -> 401
    ├── PayloadTooLargeError       body above the size limit           -> 413
    ├── PayloadRejectedError       body cannot become a record         -> quarantined (200/422)
    └── PublishError               Kafka or the registry did not take it -> 503 + Retry-After
"""
