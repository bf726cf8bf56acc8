package io.strmspark;

import java.util.Arrays;
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

  /**
   * The last keyset converted in this task thread and its result. Spark's generated code may
   * evaluate a join side's column once per joined row instead of once per row of that side (a
   * view's key is converted again for each of its rows), and Tink's JSON parser costs several
   * microseconds: the same keyset again gives the last result.
   */
  private static final ThreadLocal<byte[][]> LAST = ThreadLocal.withInitial(() -> new byte[2][]);

  @Override
  public byte[] call(byte[] keyset) {
    if (keyset == null || !Keysets.isJson(keyset)) {
      return keyset;
    }
    byte[][] last = LAST.get();
    if (!Arrays.equals(keyset, last[0])) {
      byte[] out;
      try {
        out = Keysets.compact(keyset);
      } catch (RuntimeException | java.security.GeneralSecurityException e) {
        out = keyset.clone();
      }
      last[0] = keyset.clone();  // the caller's array may be reused
      last[1] = out;
    }
    return last[1].clone();
  }
}
