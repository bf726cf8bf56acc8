"""Data contracts: the schema, key field, PII fields with purpose levels, data subject field and
validations, parsed from native or STRM documents (`parse`)."""

from strm_spark.contract.model import Contract
from strm_spark.contract.parse import load_contract, parse_contract

__all__ = ["Contract", "load_contract", "parse_contract"]
