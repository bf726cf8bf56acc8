"""The demo: a deterministic generator of a fake webshop clickstream (`python -m demo.generate`).
Not part of the wheel; `make run` uses it."""
