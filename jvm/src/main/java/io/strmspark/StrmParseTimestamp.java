package io.strmspark;

import java.text.ParsePosition;
import java.time.DateTimeException;
import java.time.LocalDate;
import java.time.LocalTime;
import java.time.ZoneId;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.time.chrono.IsoChronology;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeFormatterBuilder;
import java.time.format.ResolverStyle;
import java.time.temporal.ChronoField;
import java.time.temporal.IsoFields;
import java.time.temporal.JulianFields;
import java.time.temporal.TemporalAccessor;
import java.time.temporal.TemporalField;
import java.time.temporal.TemporalQueries;
import java.time.temporal.WeekFields;
import java.util.Locale;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.spark.sql.api.java.UDF3;

/**
 * strm_parse_timestamp_jvm(text, pattern, defaultZone): epoch milliseconds (truncated) of a
 * timestamp text parsed with a java.time DateTimeFormatter pattern, with the semantics of
 * strm_spark.timestamps (docs/timestamps.md), so that it gives the same value as the Spark SQL
 * expressions of parse_event_time for every text:
 *
 * <ul>
 *   <li>Locale.US, ISO chronology, STRICT resolution (as Spark's own parser: 2022-02-30 and
 *       24:00 are rejected); texts and literals case-sensitive, zone ids and names not (as
 *       Spark);
 *   <li>'y' is read as 'u' when the pattern has no era 'G' (as Spark does; years 0001-9999 are
 *       the same, and 0000 is 1 BC);
 *   <li>missing fields default as in Spark: time midnight (an hour of am/pm without am/pm is
 *       am), month and day 1, year 1970;
 *   <li>an offset in the text wins over a zone in the text, which wins over the default zone;
 *       DST gaps move forward and overlaps take the earlier offset (ZonedDateTime.of);
 *   <li>an instant outside Spark's timestamps (microseconds in a long) gives null.
 * </ul>
 *
 * Text that does not parse, a null argument, or a bad pattern or zone gives null: it never
 * throws. Patterns are checked on the driver (check_pattern) before this is called. The compiled
 * pattern (formatter and checks) is cached per pattern.
 */
public class StrmParseTimestamp implements UDF3<String, String, String, Long> {
  private static final long serialVersionUID = 1L;

  private static final ConcurrentHashMap<String, Compiled> COMPILED = new ConcurrentHashMap<>();
  private static final ConcurrentHashMap<String, ZoneId> ZONES = new ConcurrentHashMap<>();
  private static final WeekFields WEEKS = WeekFields.of(Locale.US);
  // The fields a pattern can give that restate the resolved date (see restatesDate).
  private static final TemporalField[] DATE_FIELDS = {
    ChronoField.DAY_OF_WEEK,
    WEEKS.dayOfWeek(),
    IsoFields.QUARTER_OF_YEAR,
    WEEKS.weekBasedYear(),
    WEEKS.weekOfWeekBasedYear(),
    WEEKS.weekOfMonth(),
    JulianFields.MODIFIED_JULIAN_DAY,
  };
  private static final Pattern YEAR_LETTERS = Pattern.compile("y+|u+|Y+");

  // The last pattern and zone of this task's copy of the function: no map lookup per row.
  private transient String lastPattern;
  private transient Compiled lastCompiled;
  private transient String lastZoneText;
  private transient ZoneId lastZone;

  @Override
  public Long call(String text, String pattern, String defaultZone) {
    if (text == null || pattern == null || defaultZone == null) {
      return null;
    }
    try {
      return parse(text, compiled(pattern), defaultZone);
    } catch (RuntimeException e) { // DateTimeException, ArithmeticException, a bad pattern
      return null;
    }
  }

  private Compiled compiled(String pattern) {
    if (!pattern.equals(lastPattern)) {
      lastCompiled = COMPILED.computeIfAbsent(pattern, Compiled::new);
      lastPattern = pattern;
    }
    return lastCompiled;
  }

  /** A pattern's formatter and the checks parse adds to java.time's, derived once. */
  private static final class Compiled {
    final DateTimeFormatter formatter;
    final boolean restatesDate;
    final long yearBound;
    final TemporalField yearField;

    Compiled(String pattern) {
      String letters = pattern.replaceAll("'[^']*'", ""); // the pattern's letters, no literals
      formatter = compile(pattern);
      restatesDate = restatesDate(letters);
      yearBound = yearBound(letters);
      yearField = yearField(letters);
    }
  }

  private ZoneId zone(String zone) {
    if (!zone.equals(lastZoneText)) {
      lastZone = ZONES.computeIfAbsent(zone, ZoneId::of);
      lastZoneText = zone;
    }
    return lastZone;
  }

  static DateTimeFormatter compile(String pattern) {
    String p = yearAsProlepticYear(pattern);
    DateTimeFormatterBuilder builder = new DateTimeFormatterBuilder();
    // Zone ids and names ('V', 'z', 'v') are matched case-insensitively, as Spark matches them
    // (europe/amsterdam); all other texts and literals case-sensitively, as Java does.
    int start = 0;
    boolean quoted = false;
    for (int i = 0; i < p.length(); i++) {
      char c = p.charAt(i);
      if (c == '\'') {
        quoted = !quoted;
      } else if (!quoted && (c == 'V' || c == 'z' || c == 'v')) {
        int end = i;
        while (end < p.length() && p.charAt(end) == c) {
          end++;
        }
        int from = i; // pad letters 'p' before the field belong to it
        while (from > start && p.charAt(from - 1) == 'p') {
          from--;
        }
        if (from > start) {
          builder.appendPattern(p.substring(start, from));
        }
        builder.parseCaseInsensitive().appendPattern(p.substring(from, end)).parseCaseSensitive();
        start = end;
        i = end - 1;
      }
    }
    if (start < p.length()) {
      builder.appendPattern(p.substring(start));
    }
    return builder
        .toFormatter(Locale.US)
        .withChronology(IsoChronology.INSTANCE)
        .withResolverStyle(ResolverStyle.STRICT);
  }

  /** 'y' outside quotes becomes 'u' when the pattern has no 'G' (Spark's rule). */
  static String yearAsProlepticYear(String pattern) {
    boolean quoted = false;
    for (int i = 0; i < pattern.length(); i++) {
      char c = pattern.charAt(i);
      if (c == '\'') {
        quoted = !quoted;
      } else if (!quoted && c == 'G') {
        return pattern;
      }
    }
    StringBuilder out = new StringBuilder(pattern.length());
    quoted = false;
    for (int i = 0; i < pattern.length(); i++) {
      char c = pattern.charAt(i);
      if (c == '\'') {
        quoted = !quoted;
      }
      out.append(!quoted && c == 'y' ? 'u' : c);
    }
    return out.toString();
  }

  /**
   * One more than the largest year the expressions accept for the pattern's year field (letters
   * 'y', 'u' or 'Y'), which are read without a sign: exactly as many digits as letters for 4 and
   * 5 letters (10^4, 10^5), at most 5 significant digits otherwise (10^5; Spark's timestamps
   * end in year 294247); 0 for no check ('yy', or no year field).
   */
  static long yearBound(String letters) {
    Matcher m = YEAR_LETTERS.matcher(letters);
    if (!m.find() || m.group().length() == 2) {
      return 0;
    }
    return m.group().length() == 4 ? 10_000L : 100_000L;
  }

  /** The field of the year that yearBound limits, read from the resolved date. */
  static TemporalField yearField(String letters) {
    Matcher m = YEAR_LETTERS.matcher(letters);
    if (m.find() && m.group().charAt(0) == 'Y') {
      return WEEKS.weekBasedYear();
    }
    return letters.indexOf('G') >= 0 ? ChronoField.YEAR_OF_ERA : ChronoField.YEAR;
  }

  /**
   * Whether the pattern has a full date (year with month and day, or day of year) and a field
   * that only restates it (day of week 'E', 'e', 'c'; quarter 'Q', 'q'; week fields 'Y', 'w',
   * 'W'; modified Julian day 'g'), which parse checks against the resolved date itself.
   * java.time's own check is not dependable: its resolver visits the parsed fields in hash
   * order (identity hash codes), so whether a wrong 'E' beside
   * 'e' is rejected depends on the JVM (with "uuuu-MM-dd YYYY ww W e EEE QQQ g", Java 17
   * accepted "2016-12-31 2016 53 5 7 Sun Q4 57753" by default and rejected it with
   * -XX:hashCode=2, and one test JVM of the suite accepted it where the others rejected it).
   * STRICT resolution also clamps week 53 of a 52-week year before its check.
   */
  static boolean restatesDate(String letters) {
    boolean fullDate =
        (letters.indexOf('y') >= 0 || letters.indexOf('u') >= 0)
            && ((letters.indexOf('M') >= 0 || letters.indexOf('L') >= 0)
                    && letters.indexOf('d') >= 0
                || letters.indexOf('D') >= 0);
    // Without a full y-M-d or y-D date the week fields or 'g' are the date's source, resolved
    // by java.time (week 53 of a 52-week year included), not restatements of it.
    return fullDate && letters.matches(".*[EecQqYwWg].*");
  }

  /**
   * Each field as parsed (unresolved), or computed from parsed fields, must equal its value in
   * the resolved date. A field the parsed ones cannot give is skipped (week fields ask
   * isSupported for fields of their own, and throw when those are missing).
   */
  private static boolean agreesWithDate(TemporalAccessor raw, LocalDate date) {
    for (TemporalField field : DATE_FIELDS) {
      long value;
      try {
        if (!raw.isSupported(field)) {
          continue;
        }
        value = raw.getLong(field);
      } catch (DateTimeException e) { // UnsupportedTemporalTypeException
        continue;
      }
      if (value != date.getLong(field)) {
        return false;
      }
    }
    return true;
  }

  private Long parse(String text, Compiled pattern, String defaultZone) {
    DateTimeFormatter formatter = pattern.formatter;
    TemporalAccessor parsed = formatter.parse(text);
    LocalDate date = parsed.query(TemporalQueries.localDate());
    if (date == null) {
      date = defaultDate(parsed);
    }
    if (pattern.yearBound > 0) { // the expressions' rule: see yearBound
      long year = date.getLong(pattern.yearField);
      if (year < 0 || year >= pattern.yearBound) {
        return null;
      }
    }
    if (pattern.restatesDate) {
      TemporalAccessor raw = formatter.parseUnresolved(text, new ParsePosition(0));
      if (raw == null || !agreesWithDate(raw, date)) {
        return null;
      }
    }
    LocalTime time = parsed.query(TemporalQueries.localTime());
    if (time == null) {
      time = defaultTime(parsed);
    }
    ZoneOffset offset = parsed.query(TemporalQueries.offset());
    long seconds;
    if (offset != null) { // an offset in the text wins over any zone
      seconds = date.toEpochSecond(time, offset);
    } else {
      ZoneId zone = parsed.query(TemporalQueries.zoneId());
      seconds = ZonedDateTime.of(date, time, zone != null ? zone : zone(defaultZone)).toEpochSecond();
    }
    Math.multiplyExact(seconds, 1_000_000L); // Spark's timestamps: microseconds in a long
    return seconds * 1000L + time.getNano() / 1_000_000;
  }

  /** Spark's defaults for a partial date: year 1970, month and day 1; day of year checked. */
  private static LocalDate defaultDate(TemporalAccessor t) {
    int year = t.isSupported(ChronoField.YEAR) ? t.get(ChronoField.YEAR) : 1970;
    if (t.isSupported(ChronoField.DAY_OF_YEAR)) {
      LocalDate date = LocalDate.ofYearDay(year, t.get(ChronoField.DAY_OF_YEAR));
      check(t, ChronoField.MONTH_OF_YEAR, date);
      check(t, ChronoField.DAY_OF_MONTH, date);
      return date;
    }
    int month = t.isSupported(ChronoField.MONTH_OF_YEAR) ? t.get(ChronoField.MONTH_OF_YEAR) : 1;
    int day = t.isSupported(ChronoField.DAY_OF_MONTH) ? t.get(ChronoField.DAY_OF_MONTH) : 1;
    return LocalDate.of(year, month, day);
  }

  private static void check(TemporalAccessor t, ChronoField field, LocalDate date) {
    if (t.isSupported(field) && t.get(field) != date.get(field)) {
      throw new DateTimeException("conflict");
    }
  }

  /** Spark's defaults for a partial time: zeros; an hour of am/pm without am/pm is am. */
  private static LocalTime defaultTime(TemporalAccessor t) {
    int hour =
        t.isSupported(ChronoField.HOUR_OF_DAY)
            ? t.get(ChronoField.HOUR_OF_DAY)
            : t.isSupported(ChronoField.HOUR_OF_AMPM) ? t.get(ChronoField.HOUR_OF_AMPM) : 0;
    int minute = t.isSupported(ChronoField.MINUTE_OF_HOUR) ? t.get(ChronoField.MINUTE_OF_HOUR) : 0;
    int second = t.isSupported(ChronoField.SECOND_OF_MINUTE) ? t.get(ChronoField.SECOND_OF_MINUTE) : 0;
    int nano = t.isSupported(ChronoField.NANO_OF_SECOND) ? t.get(ChronoField.NANO_OF_SECOND) : 0;
    return LocalTime.of(hour, minute, second, nano);
  }
}
