package io.strmspark;

import com.google.crypto.tink.subtle.AesSiv;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.nio.ByteBuffer;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Cleartext Tink JSON keysets of AES-SIV keys, parsed once per task thread, and STRM's cell
 * format: base64 of 0x01 || key id || SIV || ciphertext (TINK prefix), empty associated data.
 * Also a compact form of the same keys (see {@link #compact}), which a query carries through
 * its join with the key store instead of the JSON. Nothing here puts a key or a value in a
 * message.
 */
final class Keysets {
  static final int CACHE_SIZE = 4096;
  static final byte TINK_PREFIX = 1;
  /** The compact form's first bytes: 0x00 (never the first byte of JSON), 'S', version 1. */
  private static final byte[] COMPACT_MAGIC = {0, 'S', 1};

  private Keysets() { }

  /** One enabled AES-SIV key of a keyset. */
  static final class Key {
    final int id;
    final boolean raw;
    final AesSiv siv;

    Key(int id, boolean raw, AesSiv siv) {
      this.id = id;
      this.raw = raw;
      this.siv = siv;
    }
  }

  /**
   * Per task thread and function: parsed keysets (bounded LRU), and the last keyset and cell.
   * Rows come grouped by key link, and the key field (often others too) repeats within a
   * key's rows; AES-SIV is deterministic, so the same keyset and input give the same output,
   * and the last result is reused instead of computed again.
   */
  static final class CellState {
    private final Map<ByteBuffer, List<Key>> keysets = new LinkedHashMap<ByteBuffer, List<Key>>(64, 0.75f, true) {
      @Override
      protected boolean removeEldestEntry(Map.Entry<ByteBuffer, List<Key>> eldest) {
        return size() > CACHE_SIZE;
      }
    };
    final CharsetDecoder utf8 = StandardCharsets.UTF_8.newDecoder()
        .onMalformedInput(CodingErrorAction.REPORT)
        .onUnmappableCharacter(CodingErrorAction.REPORT);
    private byte[] lastKeyset;
    private List<Key> lastKeys;
    String lastInput;
    String lastOutput;

    /** The parsed keys of `keyset`, primary first; another keyset than the last one forgets
     * the last cell. */
    List<Key> keys(byte[] keyset) throws GeneralSecurityException {
      if (Arrays.equals(keyset, lastKeyset)) {
        return lastKeys;
      }
      lastKeyset = null;
      lastInput = null;
      lastOutput = null;
      List<Key> keys = keysets.get(ByteBuffer.wrap(keyset));
      byte[] copy = keyset.clone();  // the caller's array may be reused
      if (keys == null) {
        keys = isCompact(keyset) ? parseCompact(keyset) : parse(new String(keyset, StandardCharsets.UTF_8));
        keysets.put(ByteBuffer.wrap(copy), keys);
      }
      lastKeyset = copy;
      lastKeys = keys;
      return keys;
    }

    void remember(String input, String output) {
      lastInput = input;
      lastOutput = output;
    }
  }

  /** The enabled keys of a Tink JSON keyset as AES-SIV primitives, primary first. */
  static List<Key> parse(String json) throws GeneralSecurityException {
    List<Key> keys = new ArrayList<>();
    for (Entry entry : entries(json)) {
      keys.add(new Key(entry.id, entry.raw, new AesSiv(entry.key)));
    }
    return keys;
  }

  /** An enabled key of a keyset: id, output prefix (RAW or TINK) and the AES-SIV key bytes. */
  private static final class Entry {
    final int id;
    final boolean raw;
    final byte[] key;

    Entry(int id, boolean raw, byte[] key) {
      this.id = id;
      this.raw = raw;
      this.key = key;
    }
  }

  /** The enabled AES-SIV keys of a Tink JSON keyset, primary first. */
  private static List<Entry> entries(String json) throws GeneralSecurityException {
    JsonObject root = JsonParser.parseString(json).getAsJsonObject();
    long primary = root.has("primaryKeyId") ? root.get("primaryKeyId").getAsLong() : -1;
    List<Entry> keys = new ArrayList<>();
    for (JsonElement element : root.getAsJsonArray("key")) {
      JsonObject entry = element.getAsJsonObject();
      if (!"ENABLED".equals(entry.get("status").getAsString())) {
        continue;
      }
      JsonObject data = entry.getAsJsonObject("keyData");
      if (!data.get("typeUrl").getAsString().endsWith("google.crypto.tink.AesSivKey")) {
        throw new GeneralSecurityException("not an AES-SIV key");
      }
      String prefix = entry.get("outputPrefixType").getAsString();
      if (!prefix.equals("TINK") && !prefix.equals("RAW")) {
        throw new GeneralSecurityException("unsupported output prefix");
      }
      long id = entry.get("keyId").getAsLong();
      Entry key = new Entry((int) id, prefix.equals("RAW"),
          keyValue(java.util.Base64.getDecoder().decode(data.get("value").getAsString())));
      if (id == primary) {
        keys.add(0, key);
      } else {
        keys.add(key);
      }
    }
    return keys;
  }

  /**
   * The enabled keys of a Tink JSON keyset in a compact binary form: the magic bytes, the key
   * count, then per key (primary first) its id (4 bytes), 1 for RAW or 0 for TINK, the key's
   * length (1 byte) and the key. About 70 bytes for one key instead of about 390 of JSON.
   * Still cleartext key material: it lives only in a query's memory, like the JSON.
   */
  static byte[] compact(byte[] json) throws GeneralSecurityException {
    List<Entry> entries = entries(new String(json, StandardCharsets.UTF_8));
    if (entries.size() > 255) {
      throw new GeneralSecurityException("too many keys for the compact form");
    }
    int size = COMPACT_MAGIC.length + 1;
    for (Entry entry : entries) {
      size += 6 + entry.key.length;
    }
    ByteBuffer out = ByteBuffer.allocate(size).put(COMPACT_MAGIC).put((byte) entries.size());
    for (Entry entry : entries) {
      out.putInt(entry.id).put((byte) (entry.raw ? 1 : 0)).put((byte) entry.key.length).put(entry.key);
    }
    return out.array();
  }

  static boolean isCompact(byte[] keyset) {
    return keyset.length > COMPACT_MAGIC.length
        && Arrays.equals(keyset, 0, COMPACT_MAGIC.length, COMPACT_MAGIC, 0, COMPACT_MAGIC.length);
  }

  /** The keys of a compact keyset, primary first; a malformed one is an error without details. */
  static List<Key> parseCompact(byte[] keyset) throws GeneralSecurityException {
    ByteBuffer in = ByteBuffer.wrap(keyset, COMPACT_MAGIC.length, keyset.length - COMPACT_MAGIC.length);
    int count = in.get() & 0xff;
    List<Key> keys = new ArrayList<>(count);
    for (int i = 0; i < count; i++) {
      int id = in.getInt();
      boolean raw = in.get() == 1;
      byte[] key = new byte[in.get() & 0xff];
      in.get(key);
      keys.add(new Key(id, raw, new AesSiv(key)));
    }
    if (in.hasRemaining()) {
      throw new GeneralSecurityException("malformed compact keyset");
    }
    return keys;
  }

  /** Field 2 (key_value) of a serialized google.crypto.tink.AesSivKey protobuf message. */
  static byte[] keyValue(byte[] proto) throws GeneralSecurityException {
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
    throw new GeneralSecurityException("no AES-SIV key value");
  }
}
