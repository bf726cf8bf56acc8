package io.strmspark;

import com.google.crypto.tink.subtle.AesSiv;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.spark.sql.api.java.UDF2;

/**
 * strm_decrypt in the JVM: the plaintext of a base64 Tink AES-SIV ciphertext (STRM's cell
 * format: 0x01 || key id || SIV || ciphertext, empty associated data) under a cleartext Tink
 * JSON keyset. Null in, null out; a wrong key, tampered ciphertext or bad keyset gives null,
 * or an error without details in the strict variant. Uses Tink's AesSiv from Spark's own jars;
 * keysets are parsed once per task thread (bounded LRU), never shown in a message.
 */
public class StrmDecrypt implements UDF2<String, byte[], String> {
  private static final long serialVersionUID = 1L;
  private static final int CACHE_SIZE = 4096;
  private static final byte TINK_PREFIX = 1;

  private static final class Key {
    final int id;
    final boolean raw;
    final AesSiv siv;

    Key(int id, boolean raw, AesSiv siv) {
      this.id = id;
      this.raw = raw;
      this.siv = siv;
    }
  }

  /** Per task thread: parsed keysets (bounded LRU), and the last keyset and cell decrypted. */
  private static final class State {
    final Map<ByteBuffer, List<Key>> keysets = new LinkedHashMap<ByteBuffer, List<Key>>(64, 0.75f, true) {
      @Override
      protected boolean removeEldestEntry(Map.Entry<ByteBuffer, List<Key>> eldest) {
        return size() > CACHE_SIZE;
      }
    };
    final CharsetDecoder utf8 = StandardCharsets.UTF_8.newDecoder()
        .onMalformedInput(CodingErrorAction.REPORT)
        .onUnmappableCharacter(CodingErrorAction.REPORT);
    // Rows come grouped by key link, and the key field (and often others) repeats within a
    // key's rows: the same keyset and ciphertext give the same plaintext (AES-SIV is
    // deterministic), so the last result is reused without decrypting again.
    byte[] lastKeyset;
    List<Key> lastKeys;
    String lastCiphertext;
    String lastPlaintext;
  }

  private static final ThreadLocal<State> STATE = ThreadLocal.withInitial(State::new);

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
    State state = STATE.get();
    List<Key> keys;
    try {
      keys = keys(state, keyset);
    } catch (RuntimeException | java.security.GeneralSecurityException e) {
      return fail("invalid Tink keyset");
    }
    if (ciphertext.equals(state.lastCiphertext)) {
      return state.lastPlaintext;
    }
    byte[] ct;
    try {
      ct = Base64.getDecoder().decode(ciphertext);
    } catch (IllegalArgumentException e) {
      return fail("wrong key or tampered ciphertext");
    }
    for (Key key : keys) {
      byte[] body;
      if (key.raw) {
        body = ct;
      } else if (ct.length > 5 && ct[0] == TINK_PREFIX && ByteBuffer.wrap(ct, 1, 4).getInt() == key.id) {
        body = Arrays.copyOfRange(ct, 5, ct.length);
      } else {
        continue;
      }
      try {
        byte[] plain = key.siv.decryptDeterministically(body, new byte[0]);
        String text = state.utf8.reset().decode(ByteBuffer.wrap(plain)).toString();
        state.lastCiphertext = ciphertext;
        state.lastPlaintext = text;
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

  /** The parsed keys of `keyset`; a keyset other than the last one forgets the last cell. */
  private static List<Key> keys(State state, byte[] keyset) throws java.security.GeneralSecurityException {
    if (Arrays.equals(keyset, state.lastKeyset)) {
      return state.lastKeys;
    }
    state.lastKeyset = null;
    state.lastCiphertext = null;
    state.lastPlaintext = null;
    List<Key> keys = state.keysets.get(ByteBuffer.wrap(keyset));
    byte[] copy = keyset.clone();  // the caller's array may be reused
    if (keys == null) {
      keys = parse(new String(keyset, StandardCharsets.UTF_8));
      state.keysets.put(ByteBuffer.wrap(copy), keys);
    }
    state.lastKeyset = copy;
    state.lastKeys = keys;
    return keys;
  }

  /** The enabled AES-SIV keys of a Tink JSON keyset, primary first. */
  static List<Key> parse(String json) throws java.security.GeneralSecurityException {
    JsonObject root = JsonParser.parseString(json).getAsJsonObject();
    long primary = root.has("primaryKeyId") ? root.get("primaryKeyId").getAsLong() : -1;
    JsonArray entries = root.getAsJsonArray("key");
    List<Key> keys = new ArrayList<>();
    for (JsonElement element : entries) {
      JsonObject entry = element.getAsJsonObject();
      if (!"ENABLED".equals(entry.get("status").getAsString())) {
        continue;
      }
      JsonObject data = entry.getAsJsonObject("keyData");
      if (!data.get("typeUrl").getAsString().endsWith("google.crypto.tink.AesSivKey")) {
        throw new java.security.GeneralSecurityException("not an AES-SIV key");
      }
      String prefix = entry.get("outputPrefixType").getAsString();
      if (!prefix.equals("TINK") && !prefix.equals("RAW")) {
        throw new java.security.GeneralSecurityException("unsupported output prefix");
      }
      long id = entry.get("keyId").getAsLong();
      Key key = new Key((int) id, prefix.equals("RAW"),
          new AesSiv(keyValue(Base64.getDecoder().decode(data.get("value").getAsString()))));
      if (id == primary) {
        keys.add(0, key);
      } else {
        keys.add(key);
      }
    }
    return keys;
  }

  /** Field 2 (key_value) of a serialized google.crypto.tink.AesSivKey protobuf message. */
  static byte[] keyValue(byte[] proto) throws java.security.GeneralSecurityException {
    int i = 0;
    while (i < proto.length) {
      int tag = proto[i++] & 0xff;
      int field = tag >>> 3;
      int wire = tag & 7;
      if (wire == 0) {
        while ((proto[i++] & 0x80) != 0) { }
      } else if (wire == 2) {
        int len = 0;
        int shift = 0;
        int b;
        do {
          b = proto[i++] & 0xff;
          len |= (b & 0x7f) << shift;
          shift += 7;
        } while ((b & 0x80) != 0);
        if (field == 2) {
          return Arrays.copyOfRange(proto, i, i + len);
        }
        i += len;
      } else {
        break;
      }
    }
    throw new java.security.GeneralSecurityException("no AES-SIV key value");
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
