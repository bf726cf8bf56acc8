package io.strmspark;

import org.apache.spark.sql.api.java.UDF1;

/**
 * strm_keyset_compact_jvm: a cleartext Tink JSON keyset in Tink's binary keyset format, which
 * the JVM decrypt and encrypt functions also accept (see {@link Keysets#compact}). Decrypting
 * views apply it to the key store's side of their join, and the job to its (value, day) -> key
 * map, so each row carries about 140 bytes of key instead of about 390 bytes of JSON, and the
 * functions read the keyset without a JSON parser. A binary keyset, or one Tink cannot read,
 * is returned unchanged, so the decrypt function reports a bad one as before (null, or an error
 * in the strict variant). Null in, null out.
 */
public class StrmCompactKeyset implements UDF1<byte[], byte[]> {
  private static final long serialVersionUID = 1L;

  @Override
  public byte[] call(byte[] keyset) {
    if (keyset == null || !Keysets.isJson(keyset)) {
      return keyset;
    }
    try {
      return Keysets.compact(keyset);
    } catch (RuntimeException | java.security.GeneralSecurityException e) {
      return keyset;
    }
  }
}
