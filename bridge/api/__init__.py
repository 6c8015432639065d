"""The HTTP API: routes, auth, errors, and its OpenAPI document."""
