"""Benchmarks of the product (``manage.py bench_api``, ``bench_upload``, ... ; ``make bench`` runs them), kept out of
the product apps. A Django app only so that its management commands are found; it has no models."""
