package io.strmspark;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.util.Arrays;
import java.util.Base64;
import java.util.List;
import org.apache.spark.sql.api.java.UDF2;

/**
 * strm_decrypt in the JVM: the plaintext of a base64 Tink AES-SIV ciphertext (STRM's cell
 * format: 0x01 || key id || SIV || ciphertext, empty associated data) under a cleartext Tink
 * JSON keyset. Null in, null out; a wrong key, tampered ciphertext or bad keyset gives null,
 * or an error without details in the strict variant. Uses Tink's AesSiv from Spark's own jars;
 * keysets are parsed once per task thread (see Keysets), never shown in a message.
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
    List<Keysets.Key> keys;
    try {
      keys = state.keys(keyset);
    } catch (RuntimeException | java.security.GeneralSecurityException e) {
      return fail("invalid Tink keyset");
    }
    if (ciphertext.equals(state.lastInput)) {
      return state.lastOutput;
    }
    byte[] ct;
    try {
      ct = Base64.getDecoder().decode(ciphertext);
    } catch (IllegalArgumentException e) {
      return fail("wrong key or tampered ciphertext");
    }
    for (Keysets.Key key : keys) {
      byte[] body;
      if (key.raw) {
        body = ct;
      } else if (ct.length > 5 && ct[0] == Keysets.TINK_PREFIX && ByteBuffer.wrap(ct, 1, 4).getInt() == key.id) {
        body = Arrays.copyOfRange(ct, 5, ct.length);
      } else {
        continue;
      }
      try {
        byte[] plain = key.siv.decryptDeterministically(body, new byte[0]);
        String text = state.utf8.reset().decode(ByteBuffer.wrap(plain)).toString();
        state.remember(ciphertext, text);
        return text;
      } catch (java.security.GeneralSecurityException | CharacterCodingException e) {
        // try the keyset's next key
      }
    }
    return fail("wrong key or tampered ciphertext");
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
