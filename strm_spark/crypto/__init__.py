"""Cryptography: Tink AES-SIV cells in STRM's format (`cells`), the master key that wraps keysets
(`envelope`), and keyed masking hashes (`masking`)."""

from strm_spark.crypto.cells import decrypt, decrypt_text, encrypt_text, new_keyset, primitive

__all__ = ["decrypt", "decrypt_text", "encrypt_text", "new_keyset", "primitive"]
