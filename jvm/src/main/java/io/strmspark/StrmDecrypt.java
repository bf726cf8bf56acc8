package io.strmspark;

import com.google.crypto.tink.DeterministicAead;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.util.Base64;
import org.apache.spark.sql.api.java.UDF2;

/**
 * strm_decrypt in the JVM: the plaintext of a base64 Tink AES-SIV ciphertext (STRM's cell
 * format: 0x01 || key id || SIV || ciphertext, empty associated data) under a cleartext Tink
 * keyset (JSON, or the binary form strm_keyset_compact_jvm makes), with Tink's DeterministicAead.
 * Null in, null out; a wrong key, tampered ciphertext or bad keyset gives null, or an error
 * without details in the strict variant. Keysets are read once per task thread (see Keysets),
 * never shown in a message.
 */
public class StrmDecrypt implements UDF2<String, byte[], String> {
  private static final long serialVersionUID = 1L;
  private static final ThreadLocal<Keysets.CellState> STATE = ThreadLocal.withInitial(Keysets.CellState::new);

  protected boolean strict() {
    return false;
  }

  @Override
  public String call(String ciphertext, byte[] keyset) throws Exception {
    if (ciphertext == null) {
      return null;
    }
    if (keyset == null) {
      return fail("no keyset for a ciphertext (unknown or forgotten key link)");
    }
    Keysets.CellState state = STATE.get();
    DeterministicAead daead;
    try {
      daead = state.primitive(keyset);
    } catch (RuntimeException | java.security.GeneralSecurityException e) {
      return fail("invalid Tink keyset");
    }
    if (ciphertext.equals(state.lastInput)) {
      return state.lastOutput;
    }
    String text;
    try {
      // Tink tries the keys whose output prefix the ciphertext has, then the RAW keys.
      byte[] plain = daead.decryptDeterministically(Base64.getDecoder().decode(ciphertext),
          Keysets.NO_ASSOCIATED_DATA);
      text = state.utf8.reset().decode(ByteBuffer.wrap(plain)).toString();
    } catch (RuntimeException | java.security.GeneralSecurityException | CharacterCodingException e) {
      // bad base64, no key that decrypts it, or a plaintext that is not UTF-8
      return fail("wrong key or tampered ciphertext");
    }
    state.remember(ciphertext, text);
    return text;
  }

  private String fail(String why) {
    if (strict()) {
      throw new IllegalArgumentException("strm_decrypt_strict: " + why);
    }
    return null;
  }

  /** The strict variant: an error (never the key or the value) instead of null. */
  public static final class Strict extends StrmDecrypt implements UDF2<String, byte[], String> {
    private static final long serialVersionUID = 1L;

    @Override
    protected boolean strict() {
      return true;
    }
  }

}
