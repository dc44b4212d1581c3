"""The demo: a seeded synthetic production log and the demo candidate registry.

Kept out of ``depsim_assets`` (the product) so the product holds no data generators; the
``depsim demo`` command and the tests use it.
"""
