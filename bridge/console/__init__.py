"""The web console for operators and the data protection officer, on the service's HTTP port under /console.

Server-rendered pages (aiohttp-jinja2) over the store's domain objects; live
updates over server-sent events (htmx, vendored in static/vendor with its
licence). `app.install_console` mounts it on the API's application.
"""
