"""The use cases the HTTP layer calls, over the store, blob and route-capability seams only:
``access`` (who is calling, may they), ``tasks`` (submit, status, balance), ``files`` (result
downloads) and ``webhooks`` (delivery log, redelivery, test events, signing secrets). None of
them builds a route, a worker or a database: ``bootstrap.py`` hands each what it needs."""
