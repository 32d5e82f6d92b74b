//! HTTP dates (RFC 9110 §5.6.7), pure.
//!
//! Calendar arithmetic is Howard Hinnant's days-from-civil / civil-from-days, proleptic
//! Gregorian, in i64 so no input can overflow it.

const DAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const LONG_DAY_NAMES: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

const SECS_PER_DAY: u64 = 86_400;

/// 9999-12-31 23:59:59 GMT, the last instant an IMF-fixdate (four-digit year) can express.
pub const MAX_HTTP_DATE: u64 = 253_402_300_799;

/// `Sun, 06 Nov 1994 08:49:37 GMT` for seconds since the Unix epoch.
///
/// Times past 9999-12-31 23:59:59 (a corrupt mtime, say) are written as that instant, so the
/// output is always a valid 29-byte IMF-fixdate.
pub fn format_http_date(unix_secs: u64) -> String {
    let secs = unix_secs.min(MAX_HTTP_DATE);
    // Both fit: secs <= MAX_HTTP_DATE.
    let days = (secs / SECS_PER_DAY) as i64;
    let time = secs % SECS_PER_DAY;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAY_NAMES[weekday(days)],
        day,
        MONTHS[(month - 1) as usize],
        year,
        time / 3600,
        time / 60 % 60,
        time % 60,
    )
}

/// Seconds since the Unix epoch from IMF-fixdate, RFC 850 or asctime form; None if invalid.
///
/// Strict: exact spacing, case-sensitive names (RFC 9110 says `%s"..."`), a real calendar day,
/// a day name that matches the date, 00:00:00–23:59:60, nothing before 1970. RFC 850
/// two-digit years 70–99 are 19xx, 00–69 are 20xx.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.get(3) == Some(&b',') {
        imf_fixdate(b)
    } else if b.contains(&b',') {
        rfc850(b)
    } else {
        asctime(b)
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn imf_fixdate(b: &[u8]) -> Option<u64> {
    if b.len() != 29 || &b[3..5] != b", " || b[7] != b' ' || b[11] != b' ' || b[16] != b' ' {
        return None;
    }
    if &b[25..] != b" GMT" {
        return None;
    }
    let wday = name_index(&DAY_NAMES, &b[..3])?;
    let day = digits(&b[5..7])?;
    let month = name_index(&MONTHS, &b[8..11])? as u32 + 1;
    let year = digits(&b[12..16])?;
    let time = time_of_day(&b[17..25])?;
    timestamp(year, month, day, time, wday)
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`
fn rfc850(b: &[u8]) -> Option<u64> {
    let comma = b.iter().position(|&c| c == b',')?;
    let wday = name_index(&LONG_DAY_NAMES, &b[..comma])?;
    let rest = &b[comma..];
    if rest.len() != 24 || &rest[..2] != b", " || rest[4] != b'-' || rest[8] != b'-' {
        return None;
    }
    if rest[11] != b' ' || &rest[20..] != b" GMT" {
        return None;
    }
    let day = digits(&rest[2..4])?;
    let month = name_index(&MONTHS, &rest[5..8])? as u32 + 1;
    let yy = digits(&rest[9..11])?;
    let year = if yy >= 70 { 1900 + yy } else { 2000 + yy };
    let time = time_of_day(&rest[12..20])?;
    timestamp(year, month, day, time, wday)
}

/// `Sun Nov  6 08:49:37 1994` (day of month as SP DIGIT or 2DIGIT)
fn asctime(b: &[u8]) -> Option<u64> {
    if b.len() != 24 || b[3] != b' ' || b[7] != b' ' || b[10] != b' ' || b[19] != b' ' {
        return None;
    }
    let wday = name_index(&DAY_NAMES, &b[..3])?;
    let month = name_index(&MONTHS, &b[4..7])? as u32 + 1;
    let day = match &b[8..10] {
        [b' ', d] => digits(&[*d])?,
        two => digits(two)?,
    };
    let time = time_of_day(&b[11..19])?;
    let year = digits(&b[20..24])?;
    timestamp(year, month, day, time, wday)
}

/// `HH:MM:SS` as seconds into the day; 60 is a leap second (RFC 9110 §5.6.7).
fn time_of_day(b: &[u8]) -> Option<u64> {
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, s) = (digits(&b[..2])?, digits(&b[3..5])?, digits(&b[6..])?);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(u64::from(h) * 3600 + u64::from(m) * 60 + u64::from(s))
}

fn timestamp(year: u32, month: u32, day: u32, time: u64, wday: usize) -> Option<u64> {
    if year < 1970 || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    if weekday(days) != wday {
        return None;
    }
    // days >= 0 since year >= 1970, and small since year <= 9999.
    Some(u64::try_from(days).ok()? * SECS_PER_DAY + time)
}

/// ASCII digits only (no sign, no spaces), at most 4 of them.
fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 4 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0')))
}

fn name_index(names: &[&str], b: &[u8]) -> Option<usize> {
    names.iter().position(|n| n.as_bytes() == b)
}

fn is_leap(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// 0 = Sunday; 1970-01-01 was a Thursday.
fn weekday(days: i64) -> usize {
    (days + 4).rem_euclid(7) as usize
}

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1..=12, day 1..=31).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let mp = i64::from((month + 9) % 12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let cases: &[(u64, &str)] = &[
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (1, "Thu, 01 Jan 1970 00:00:01 GMT"),
            (86_399, "Thu, 01 Jan 1970 23:59:59 GMT"),
            (86_400, "Fri, 02 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (951_868_800, "Wed, 01 Mar 2000 00:00:00 GMT"),
            (1_000_000_000, "Sun, 09 Sep 2001 01:46:40 GMT"),
            (1_234_567_890, "Fri, 13 Feb 2009 23:31:30 GMT"),
            (1_709_164_800, "Thu, 29 Feb 2024 00:00:00 GMT"),
            (2_147_483_647, "Tue, 19 Jan 2038 03:14:07 GMT"),
            (2_147_483_648, "Tue, 19 Jan 2038 03:14:08 GMT"),
            (4_102_444_800, "Fri, 01 Jan 2100 00:00:00 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
            (4_294_967_295, "Sun, 07 Feb 2106 06:28:15 GMT"),
            (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 GMT"),
        ];
        for &(secs, text) in cases {
            assert_eq!(format_http_date(secs), text);
            assert_eq!(parse_http_date(text), Some(secs), "{text}");
        }
    }

    #[test]
    fn far_future_saturates() {
        for secs in [
            MAX_HTTP_DATE + 1,
            1 << 40,
            u64::MAX / 2,
            u64::MAX - 1,
            u64::MAX,
        ] {
            assert_eq!(format_http_date(secs), "Fri, 31 Dec 9999 23:59:59 GMT");
        }
    }

    #[test]
    fn three_forms() {
        let cases: &[(&str, u64)] = &[
            ("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777),
            ("Sunday, 06-Nov-94 08:49:37 GMT", 784_111_777),
            ("Sun Nov  6 08:49:37 1994", 784_111_777),
            ("Sun Nov 06 08:49:37 1994", 784_111_777),
            ("Thursday, 01-Jan-70 00:00:00 GMT", 0),
            ("Tuesday, 31-Dec-69 23:59:59 GMT", 3_155_759_999), // 2069
            ("Saturday, 01-Jan-00 00:00:00 GMT", 946_684_800),
            ("Tuesday, 29-Feb-00 00:00:00 GMT", 951_782_400),
            ("Thu Jan  1 00:00:00 1970", 0),
            ("Fri Dec 31 23:59:59 9999", MAX_HTTP_DATE),
            ("Tue Feb 29 00:00:00 2000", 951_782_400),
            // Leap second: one past 23:59:59, i.e. the next midnight.
            ("Sat, 31 Dec 2016 23:59:60 GMT", 1_483_228_800),
        ];
        for &(text, secs) in cases {
            assert_eq!(parse_http_date(text), Some(secs), "{text}");
        }
    }

    #[test]
    fn round_trip_many_values() {
        // Every day from 1970 to past 2400 at a moving time of day, then big strides to 9999.
        let mut secs = 0u64;
        while secs < 14_000_000_000 {
            let text = format_http_date(secs);
            assert_eq!(text.len(), 29);
            assert_eq!(parse_http_date(&text), Some(secs), "{text}");
            secs += SECS_PER_DAY + 3_607;
        }
        let mut secs = 0u64;
        while secs <= MAX_HTTP_DATE {
            let text = format_http_date(secs);
            assert_eq!(parse_http_date(&text), Some(secs), "{text}");
            secs += 9_999_991;
        }
    }

    #[test]
    fn calendar_matches_days_from_civil() {
        for days in -800_000..3_000_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d));
        }
    }

    #[test]
    fn leap_years() {
        let cases = [
            (1970, false),
            (1972, true),
            (1900, false),
            (2000, true),
            (2024, true),
            (2100, false),
            (2400, true),
            (9996, true),
        ];
        for (year, leap) in cases {
            assert_eq!(is_leap(year), leap, "{year}");
        }
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 12:00:00 GMT"),
            Some(1_709_208_000)
        );
        assert_eq!(parse_http_date("Mon, 29 Feb 2100 00:00:00 GMT"), None);
        assert_eq!(parse_http_date("Wed, 29 Feb 2023 00:00:00 GMT"), None);
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT"),
            Some(951_782_400)
        );
    }

    #[test]
    fn invalid_dates() {
        let cases = [
            "",
            " ",
            "GMT",
            "0",
            "784111777",
            // wrong weekday
            "Mon, 06 Nov 1994 08:49:37 GMT",
            "Monday, 06-Nov-94 08:49:37 GMT",
            "Mon Nov  6 08:49:37 1994",
            // impossible days and months
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Thu, 31 Nov 1994 08:49:37 GMT",
            "Sun, 32 Jan 1995 00:00:00 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Sun, 06 NOV 1994 08:49:37 GMT",
            "sun, 06 Nov 1994 08:49:37 GMT",
            "Sun Nov  0 08:49:37 1994",
            "Sun Nov 31 08:49:37 1994",
            // impossible times
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1994 08:49:61 GMT",
            "Sun, 06 Nov 1994 99:99:99 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1994 08-49-37 GMT",
            "Sun, 06 Nov 1994 08:49:3x GMT",
            // before the epoch
            "Wed, 31 Dec 1969 23:59:59 GMT",
            "Sat, 01 Jan 0000 00:00:00 GMT",
            "Wed Dec 31 23:59:59 1969",
            // spacing, zone, length
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37 gmt",
            "Sun, 06 Nov 1994 08:49:37 +0000",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 06 Nov 1994 08:49:37 GMT ",
            " Sun, 06 Nov 1994 08:49:37 GMT",
            "Sun,  6 Nov 1994 08:49:37 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 06-Nov-1994 08:49:37 GMT",
            "Sun,06 Nov 1994 08:49:37 GMT ",
            "Sun, 06 Nov 1994  08:49:37 GMT",
            "Sun, +6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov +994 08:49:37 GMT",
            "Sun, 06 Nov 1994 +8:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 UTC",
            "Sunday, 06 Nov 94 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun, 06-Nov-94 08:49:37 GMT",
            "Sundae, 06-Nov-94 08:49:37 GMT",
            ", 06-Nov-94 08:49:37 GMT",
            "Sunday, 6-Nov-94 08:49:37 GMT",
            "Sun Nov 6 08:49:37 1994",
            "Sun Nov  6 08:49:37 94",
            "Sun Nov  6 08:49:37 1994 ",
            "Sun  Nov 6 08:49:37 1994",
            "Sun Nov _6 08:49:37 1994",
            "Sun Nov  6 08:49:37 1994 GMT",
            // non-ASCII in places where byte offsets could split a char
            "Sün, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Növ 1994 08:49:37 GM",
            "Sun Nov  6 08:49:37 199é",
            "Sunday, 06-Nov-94 08:49:37 GMTé",
            "é,",
            ",",
            ",,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,",
            "\0\0\0,\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        ];
        for text in cases {
            assert_eq!(parse_http_date(text), None, "{text:?}");
        }
    }

    #[test]
    fn every_truncation_is_rejected() {
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            for k in 0..text.len() {
                assert_eq!(parse_http_date(&text[..k]), None, "{:?}", &text[..k]);
            }
        }
    }
}
