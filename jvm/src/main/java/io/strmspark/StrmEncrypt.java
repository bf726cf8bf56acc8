package io.strmspark;

import com.google.crypto.tink.DeterministicAead;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import org.apache.spark.sql.api.java.UDF2;

/**
 * strm_encrypt in the JVM: a PII cell's ciphertext under the row's cleartext Tink keyset (JSON,
 * or the binary form strm_keyset_compact_jvm makes), with Tink's DeterministicAead, so byte for
 * byte what Tink's Python DeterministicAead gives (AES-SIV is deterministic): base64 of 0x01 ||
 * primary key id || SIV || ciphertext, empty associated data. Null in, null out; a value
 * without a keyset is an error (never dropped, never shown). The batch job uses it when the UDF
 * jar is on the class path.
 */
public class StrmEncrypt implements UDF2<String, byte[], String> {
  private static final long serialVersionUID = 1L;
  private static final ThreadLocal<Keysets.CellState> STATE = ThreadLocal.withInitial(Keysets.CellState::new);

  @Override
  public String call(String value, byte[] keyset) throws Exception {
    if (value == null) {
      return null;
    }
    if (keyset == null) {
      throw new IllegalArgumentException("strm_encrypt: a value has no key (no keyset for its row)");
    }
    Keysets.CellState state = STATE.get();
    DeterministicAead daead;
    try {
      daead = state.primitive(keyset);
    } catch (Keysets.NoEnabledKey e) {
      throw new IllegalArgumentException("strm_encrypt: the keyset has no enabled key");
    } catch (RuntimeException | java.security.GeneralSecurityException e) {
      throw new IllegalArgumentException("strm_encrypt: invalid Tink keyset");
    }
    if (value.equals(state.lastInput)) {
      return state.lastOutput;
    }
    byte[] out;
    try {
      out = daead.encryptDeterministically(value.getBytes(StandardCharsets.UTF_8), Keysets.NO_ASSOCIATED_DATA);
    } catch (java.security.GeneralSecurityException e) {
      throw new IllegalArgumentException("strm_encrypt: the keyset cannot encrypt");
    }
    String text = Base64.getEncoder().encodeToString(out);
    state.remember(value, text);
    return text;
  }
}
