"""The Python ``map`` step of the typed-path benchmark: a function that reads and changes each record."""


def tag(record: dict) -> dict:
    record["amount_cents"] = int(record["amount"] * 100)
    return record
