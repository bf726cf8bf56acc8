package io.strmspark;

import com.google.crypto.tink.DeterministicAead;
import com.google.crypto.tink.InsecureSecretKeyAccess;
import com.google.crypto.tink.KeyStatus;
import com.google.crypto.tink.KeysetHandle;
import com.google.crypto.tink.RegistryConfiguration;
import com.google.crypto.tink.TinkJsonProtoKeysetFormat;
import com.google.crypto.tink.TinkProtoKeysetFormat;
import com.google.crypto.tink.daead.DeterministicAeadConfig;
import java.nio.ByteBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Cleartext Tink keysets read with Tink's own API into its DeterministicAead primitive, once per
 * task thread. A keyset is Tink's JSON format (as the key store holds it) or Tink's binary
 * format (what {@link #compact} makes of the JSON). The primitive writes STRM's cell format:
 * 0x01 || key id || SIV || ciphertext for a TINK key, SIV || ciphertext for a RAW one, under
 * empty associated data. Tink is the copy bundled (relocated) in strm-spark's jar, not Spark's.
 * Nothing here puts a key or a value in a message.
 */
final class Keysets {
  static final int CACHE_SIZE = 4096;
  static final byte[] NO_ASSOCIATED_DATA = new byte[0];

  static {
    try {
      // The AES-SIV key manager and the DeterministicAead wrapper, in the bundled Tink's registry.
      DeterministicAeadConfig.register();
    } catch (GeneralSecurityException e) {
      throw new ExceptionInInitializerError("cannot register Tink's DeterministicAead");
    }
  }

  private Keysets() { }

  /** A keyset Tink reads, but with no enabled key: nothing to encrypt with. */
  static final class NoEnabledKey extends GeneralSecurityException {
    private static final long serialVersionUID = 1L;

    NoEnabledKey() {
      super("the keyset has no enabled key");
    }
  }

  /**
   * True for Tink's JSON format: '{' after optional whitespace. Tink's binary format starts with
   * a protobuf field tag (0x08, primary_key_id, or 0x12, key), never '{' or whitespace.
   */
  static boolean isJson(byte[] keyset) {
    for (byte b : keyset) {
      if (b == '{') {
        return true;
      }
      if (b != ' ' && b != '\t' && b != '\n' && b != '\r') {
        return false;
      }
    }
    return false;
  }

  /** The handle of a cleartext keyset in Tink's JSON or binary format. */
  static KeysetHandle handle(byte[] keyset) throws GeneralSecurityException {
    if (isJson(keyset)) {
      return TinkJsonProtoKeysetFormat.parseKeyset(
          new String(keyset, StandardCharsets.UTF_8), InsecureSecretKeyAccess.get());
    }
    return TinkProtoKeysetFormat.parseKeyset(keyset, InsecureSecretKeyAccess.get());
  }

  /**
   * Tink's DeterministicAead of a keyset: encrypts with its primary key, decrypts with any
   * enabled key. Errors (GeneralSecurityException or Tink's unchecked ones) carry Tink's
   * messages, which callers replace: they may describe the keyset.
   */
  static DeterministicAead primitive(byte[] keyset) throws GeneralSecurityException {
    KeysetHandle handle = handle(keyset);
    boolean enabled = false;
    for (int i = 0; i < handle.size() && !enabled; i++) {
      enabled = handle.getAt(i).getStatus() == KeyStatus.ENABLED;
    }
    if (!enabled) {
      throw new NoEnabledKey();
    }
    return handle.getPrimitive(RegistryConfiguration.get(), DeterministicAead.class);
  }

  /**
   * A keyset in Tink's binary format (about 140 bytes for one AES-SIV key instead of about 390
   * of JSON), which a query carries through its join with the key store instead of the JSON.
   * Still cleartext key material: it lives only in a query's memory, like the JSON.
   */
  static byte[] compact(byte[] keyset) throws GeneralSecurityException {
    return TinkProtoKeysetFormat.serializeKeyset(handle(keyset), InsecureSecretKeyAccess.get());
  }

  /**
   * Per task thread and function: primitives of the keysets seen (bounded LRU), and the last
   * keyset and cell. Rows come grouped by key link, and the key field (often others too) repeats
   * within a key's rows; AES-SIV is deterministic, so the same keyset and input give the same
   * output, and the last result is reused instead of computed again.
   */
  static final class CellState {
    private final Map<ByteBuffer, DeterministicAead> primitives =
        new LinkedHashMap<ByteBuffer, DeterministicAead>(64, 0.75f, true) {
          private static final long serialVersionUID = 1L;

          @Override
          protected boolean removeEldestEntry(Map.Entry<ByteBuffer, DeterministicAead> eldest) {
            return size() > CACHE_SIZE;
          }
        };
    final CharsetDecoder utf8 = StandardCharsets.UTF_8.newDecoder()
        .onMalformedInput(CodingErrorAction.REPORT)
        .onUnmappableCharacter(CodingErrorAction.REPORT);
    private byte[] lastKeyset;
    private DeterministicAead lastPrimitive;
    String lastInput;
    String lastOutput;

    /** The primitive of `keyset`; another keyset than the last one forgets the last cell. */
    DeterministicAead primitive(byte[] keyset) throws GeneralSecurityException {
      if (Arrays.equals(keyset, lastKeyset)) {
        return lastPrimitive;
      }
      lastKeyset = null;
      lastInput = null;
      lastOutput = null;
      DeterministicAead primitive = primitives.get(ByteBuffer.wrap(keyset));
      byte[] copy = keyset.clone();  // the caller's array may be reused
      if (primitive == null) {
        primitive = Keysets.primitive(keyset);
        primitives.put(ByteBuffer.wrap(copy), primitive);
      }
      lastKeyset = copy;
      lastPrimitive = primitive;
      return primitive;
    }

    void remember(String input, String output) {
      lastInput = input;
      lastOutput = output;
    }
  }
}
